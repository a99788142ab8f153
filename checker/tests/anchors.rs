//! Every Porcupine known-answer history gets the verdict its README lists.

use std::path::{Path, PathBuf};

use checker::{check_named, CheckOptions, Format, Validity};

fn anchors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine")
}

/// (file, expected verdict) rows of the README's table; `None` for the empty file.
fn expected() -> Vec<(String, Option<Validity>)> {
    let readme = std::fs::read_to_string(anchors().join("README.md")).expect("anchors README");
    readme
        .lines()
        .filter(|l| l.starts_with("jepsen/") || l.starts_with("kv/"))
        .map(|l| {
            let mut cols = l.split('\t');
            let file = cols.next().unwrap().to_string();
            let verdict = match cols.next().unwrap() {
                "linearizable" => Some(Validity::Valid),
                "NOT linearizable" => Some(Validity::Invalid),
                _ => None,
            };
            (file, verdict)
        })
        .collect()
}

#[test]
fn every_porcupine_anchor_gets_its_listed_verdict() {
    let rows = expected();
    assert_eq!(rows.len(), 109, "README lists 109 files");
    let mut wrong = Vec::new();
    for (file, want) in &rows {
        let (format, model) = if file.starts_with("jepsen/") {
            (Format::JepsenLog, "cas-register")
        } else {
            (Format::JepsenEdn, "append-kv")
        };
        let history = checker::format::read_file(&anchors().join(file), format)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let result = check_named(model, &history, &CheckOptions::default()).unwrap();
        match want {
            Some(v) => {
                if result.valid != *v {
                    wrong.push(format!("{file}: got {:?}, want {v:?}", result.valid));
                }
                if *v == Validity::Invalid {
                    let c = &result.failures[0];
                    assert!(
                        c.prefix.iter().all(|op| op.index != c.op.index),
                        "{file}: blocked op inside its own prefix"
                    );
                }
            }
            None => {
                // etcd_095 is empty: a clear, trivial answer, no crash.
                assert_eq!(history.ops.len(), 0);
                assert_eq!(result.valid, Validity::Valid);
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn kv_anchors_agree_with_and_without_partitioning() {
    for name in ["c01-ok", "c01-bad", "c10-ok", "c10-bad"] {
        let history = checker::format::read_file(
            &anchors().join(format!("kv/{name}.txt")),
            Format::JepsenEdn,
        )
        .unwrap();
        let whole = CheckOptions {
            partition: false,
            ..CheckOptions::default()
        };
        let split = check_named("append-kv", &history, &CheckOptions::default()).unwrap();
        let joint = check_named("append-kv", &history, &whole).unwrap();
        assert_eq!(split.valid, joint.valid, "{name}");
        let want = if name.ends_with("ok") {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        assert_eq!(joint.valid, want, "{name}");
    }
}

#[test]
fn unpartitioned_c50_is_decided() {
    // Porcupine gives up on these after 30 s; here the valid one is proved by a
    // merged order replayed on the whole map and the invalid one is refuted by
    // version zones, neither needing the keys split. The budget only keeps a
    // regression from hanging the test.
    for name in ["c50-ok", "c50-bad"] {
        let history = checker::format::read_file(
            &anchors().join(format!("kv/{name}.txt")),
            Format::JepsenEdn,
        )
        .unwrap();
        let whole = CheckOptions {
            partition: false,
            time_limit: Some(std::time::Duration::from_secs(60)),
            ..CheckOptions::default()
        };
        let r = check_named("append-kv", &history, &whole).unwrap();
        let want = if name.ends_with("ok") {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        assert_eq!(r.valid, want, "{name}");
        assert!(!r.partitioned, "{name}");
    }
}

#[test]
fn a_tiny_budget_gives_unknown_not_a_crash() {
    let history =
        checker::format::read_file(&anchors().join("kv/c50-ok.txt"), Format::JepsenEdn).unwrap();
    let tight = CheckOptions {
        memory_limit: 4096,
        ..CheckOptions::default()
    };
    let r = check_named("append-kv", &history, &tight).unwrap();
    assert_eq!(r.valid, Validity::Unknown);
    assert_eq!(
        r.unknown.as_ref().unwrap().reason,
        checker::budget::Exhausted::Memory
    );
    assert!(r.stats.peak_memo_bytes <= 4096);
}
