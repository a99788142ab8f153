//! Hand-made histories with known answers, valid and invalid, for every model.

use checker::{check_named, CheckOptions, Validity};

/// Builds a JSONL history from compact lines: `P invoke|ok|fail|info F VALUE [KEY]`.
fn history(lines: &[&str]) -> checker::History {
    let mut text = String::new();
    for (t, l) in lines.iter().enumerate() {
        let parts: Vec<&str> = l.splitn(4, ' ').collect();
        let (p, kind, f) = (parts[0], parts[1], parts[2]);
        let rest = parts.get(3).copied().unwrap_or("null");
        let (value, key) = match rest.rsplit_once(" @") {
            Some((v, k)) => (v, format!(",\"key\":\"{k}\"")),
            None => (rest, String::new()),
        };
        text.push_str(&format!(
            "{{\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"value\":{value}{key},\"time\":{t}}}\n"
        ));
    }
    checker::format::jsonl::read(text.as_bytes()).expect("test history parses")
}

fn verdict(model: &str, lines: &[&str]) -> Validity {
    check_named(model, &history(lines), &CheckOptions::default())
        .unwrap()
        .valid
}

#[test]
fn register_sequential_reads_see_the_last_write() {
    let ok = [
        "0 invoke write 1",
        "0 ok write 1",
        "1 invoke read null",
        "1 ok read 1",
    ];
    assert_eq!(verdict("register", &ok), Validity::Valid);
    let stale = [
        "0 invoke write 1",
        "0 ok write 1",
        "1 invoke read null",
        "1 ok read null",
    ];
    assert_eq!(verdict("register", &stale), Validity::Invalid);
}

#[test]
fn register_concurrent_read_may_see_old_or_new() {
    for seen in ["null", "1"] {
        let h = [
            "0 invoke write 1",
            "1 invoke read null",
            &format!("1 ok read {seen}"),
            "0 ok write 1",
        ];
        assert_eq!(verdict("register", &h), Validity::Valid, "read {seen}");
    }
    let h = [
        "0 invoke write 1",
        "1 invoke read null",
        "1 ok read 2",
        "0 ok write 1",
    ];
    assert_eq!(verdict("register", &h), Validity::Invalid);
}

#[test]
fn register_rejects_cas_and_says_where() {
    let h = history(&["0 invoke cas [1,2]", "0 ok cas [1,2]"]);
    let e = check_named("register", &h, &CheckOptions::default()).unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(e.to_string().contains("cas"), "{e}");
}

#[test]
fn cas_register_cas_needs_the_expected_value() {
    let ok = [
        "0 invoke write 1",
        "0 ok write 1",
        "0 invoke cas [1,2]",
        "0 ok cas [1,2]",
        "1 invoke read null",
        "1 ok read 2",
    ];
    assert_eq!(verdict("cas-register", &ok), Validity::Valid);
    let bad = [
        "0 invoke write 1",
        "0 ok write 1",
        "0 invoke cas [3,2]",
        "0 ok cas [3,2]",
    ];
    assert_eq!(verdict("cas-register", &bad), Validity::Invalid);
    // A failed cas certainly did not happen: dropped.
    let failed = [
        "0 invoke write 1",
        "0 ok write 1",
        "0 invoke cas [1,2]",
        "0 fail cas [1,2]",
        "1 invoke read null",
        "1 ok read 1",
    ];
    assert_eq!(verdict("cas-register", &failed), Validity::Valid);
}

#[test]
fn indeterminate_write_may_take_effect_or_not() {
    let took = [
        "0 invoke write 1",
        "0 info write 1",
        "1 invoke read null",
        "1 ok read 1",
    ];
    assert_eq!(verdict("cas-register", &took), Validity::Valid);
    let never = [
        "0 invoke write 1",
        "0 info write 1",
        "1 invoke read null",
        "1 ok read null",
    ];
    assert_eq!(verdict("cas-register", &never), Validity::Valid);
    // Unfinished at the end of the file counts as info.
    let open = ["0 invoke write 1", "1 invoke read null", "1 ok read 1"];
    assert_eq!(verdict("cas-register", &open), Validity::Valid);
    // It may land long after its completion was lost, even after a later write.
    let late = [
        "0 invoke write 1",
        "0 info write 1",
        "1 invoke write 2",
        "1 ok write 2",
        "2 invoke read null",
        "2 ok read 1",
    ];
    assert_eq!(verdict("cas-register", &late), Validity::Valid);
}

#[test]
fn indeterminate_write_cannot_act_before_its_invoke_or_twice() {
    let early = [
        "1 invoke read null",
        "1 ok read 1",
        "0 invoke write 1",
        "0 info write 1",
    ];
    assert_eq!(verdict("cas-register", &early), Validity::Invalid);
    let twice = [
        "0 invoke write 1",
        "0 info write 1",
        "1 invoke write 2",
        "1 ok write 2",
        "2 invoke read null",
        "2 ok read 1",
        "2 invoke read null",
        "2 ok read 2",
    ];
    // 1 then 2 is impossible: the only write of 2 completed before the read of 1.
    assert_eq!(verdict("cas-register", &twice), Validity::Invalid);
    let flip = [
        "0 invoke write 1",
        "0 info write 1",
        "2 invoke read null",
        "2 ok read 1",
        "2 invoke read null",
        "2 ok read null",
    ];
    assert_eq!(verdict("cas-register", &flip), Validity::Invalid);
}

#[test]
fn indeterminate_cas_applies_only_on_a_match() {
    let matched = [
        "0 invoke write 1",
        "0 ok write 1",
        "1 invoke cas [1,2]",
        "1 info cas [1,2]",
        "2 invoke read null",
        "2 ok read 2",
    ];
    assert_eq!(verdict("cas-register", &matched), Validity::Valid);
    let no_match = [
        "0 invoke write 1",
        "0 ok write 1",
        "1 invoke cas [5,2]",
        "1 info cas [5,2]",
        "2 invoke read null",
        "2 ok read 2",
    ];
    assert_eq!(verdict("cas-register", &no_match), Validity::Invalid);
}

#[test]
fn kv_checks_keys_independently_and_names_the_bad_key() {
    let h = [
        "0 invoke write 1 @a",
        "0 ok write 1 @a",
        "1 invoke write 2 @b",
        "1 ok write 2 @b",
        "0 invoke read null @a",
        "0 ok read 1 @a",
        "1 invoke read null @b",
        "1 ok read 1 @b",
    ];
    let r = check_named("kv", &history(&h), &CheckOptions::default()).unwrap();
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.keys, 2);
    let c = &r.failures[0];
    assert_eq!(c.key.as_ref().unwrap().to_string(), "b");
    assert_eq!((c.op.f.as_str(), c.op.invoke_line), ("read", 7));
    assert_eq!(c.prefix.len(), 1);
    assert_eq!(c.prefix[0].f, "write");
    assert_eq!(c.state, checker::value::Value::Int(2));
}

#[test]
fn counterexample_gives_longest_prefix_and_state() {
    let h = [
        "0 invoke write 1",
        "0 ok write 1",
        "0 invoke write 2",
        "0 ok write 2",
        "1 invoke read null",
        "1 ok read 2",
        "1 invoke read null",
        "1 ok read 1",
    ];
    let r = check_named("cas-register", &history(&h), &CheckOptions::default()).unwrap();
    let c = &r.failures[0];
    assert_eq!(c.prefix.len(), 3);
    assert_eq!(c.op.invoke_line, 7);
    assert_eq!(c.state, checker::value::Value::Int(2));
    assert!(c.exact);
}

#[test]
fn append_kv_concatenates_per_key() {
    let ok = [
        "0 invoke put \"a\" @k",
        "0 ok put \"a\" @k",
        "0 invoke append \"b\" @k",
        "0 ok append \"b\" @k",
        "1 invoke get null @k",
        "1 ok get \"ab\" @k",
        "1 invoke get null @j",
        "1 ok get \"\" @j",
    ];
    assert_eq!(verdict("append-kv", &ok), Validity::Valid);
    let bad = [
        "0 invoke append \"b\" @k",
        "0 ok append \"b\" @k",
        "0 invoke append \"c\" @k",
        "0 ok append \"c\" @k",
        "1 invoke get null @k",
        "1 ok get \"cb\" @k",
    ];
    assert_eq!(verdict("append-kv", &bad), Validity::Invalid);
}

#[test]
fn mutex_allows_one_holder() {
    let ok = [
        "0 invoke acquire null",
        "0 ok acquire null",
        "0 invoke release null",
        "0 ok release null",
        "1 invoke acquire null",
        "1 ok acquire null",
    ];
    assert_eq!(verdict("mutex", &ok), Validity::Valid);
    let both = [
        "0 invoke acquire null",
        "1 invoke acquire null",
        "0 ok acquire null",
        "1 ok acquire null",
    ];
    assert_eq!(verdict("mutex", &both), Validity::Invalid);
    let unheld = ["0 invoke release null", "0 ok release null"];
    assert_eq!(verdict("mutex", &unheld), Validity::Invalid);
    // An indeterminate release may have freed the lock.
    let maybe = [
        "0 invoke acquire null",
        "0 ok acquire null",
        "0 invoke release null",
        "0 info release null",
        "1 invoke acquire null",
        "1 ok acquire null",
    ];
    assert_eq!(verdict("mutex", &maybe), Validity::Valid);
    // An indeterminate acquire never makes a second holder legal.
    let never = [
        "0 invoke acquire null",
        "0 info acquire null",
        "1 invoke acquire null",
        "1 ok acquire null",
        "2 invoke acquire null",
        "2 ok acquire null",
    ];
    assert_eq!(verdict("mutex", &never), Validity::Invalid);
}

#[test]
fn mutex_take_over_and_renewal_need_a_held_lock() {
    // b takes over a's expired lease: legal while a holds it.
    let ok = [
        "0 invoke acquire null",
        "0 ok acquire {\"token\":1}",
        "1 invoke acquire null",
        "1 ok acquire {\"token\":2,\"took_over\":true}",
        "1 invoke release null",
        "1 ok release null",
    ];
    assert_eq!(verdict("mutex", &ok), Validity::Valid);
    // A take-over of a free lock claims an expiry that cannot have happened.
    let free = [
        "0 invoke acquire null",
        "0 ok acquire {\"token\":2,\"took_over\":true}",
    ];
    assert_eq!(verdict("mutex", &free), Validity::Invalid);
    // Without the claim, a second grant is still a second holder.
    let plain = [
        "0 invoke acquire null",
        "0 ok acquire {\"token\":1}",
        "1 invoke acquire null",
        "1 ok acquire {\"token\":2,\"took_over\":false}",
    ];
    assert_eq!(verdict("mutex", &plain), Validity::Invalid);
    // A renewal by the holder keeps the lock; a renewal of a free lock cannot be.
    let renewal = [
        "0 invoke acquire null",
        "0 ok acquire {\"token\":1}",
        "0 invoke acquire null",
        "0 ok acquire {\"token\":1,\"renewed\":true}",
        "0 invoke release null",
        "0 ok release null",
    ];
    assert_eq!(verdict("mutex", &renewal), Validity::Valid);
    assert_eq!(verdict("mutex", &renewal[2..]), Validity::Invalid);
}

#[test]
fn fifo_queue_keeps_order() {
    let ok = [
        "0 invoke enqueue 1",
        "0 ok enqueue 1",
        "0 invoke enqueue 2",
        "0 ok enqueue 2",
        "1 invoke dequeue null",
        "1 ok dequeue 1",
        "1 invoke dequeue null",
        "1 ok dequeue 2",
        "1 invoke dequeue null",
        "1 ok dequeue null",
    ];
    assert_eq!(verdict("fifo-queue", &ok), Validity::Valid);
    let reordered = [
        "0 invoke enqueue 1",
        "0 ok enqueue 1",
        "0 invoke enqueue 2",
        "0 ok enqueue 2",
        "1 invoke dequeue null",
        "1 ok dequeue 2",
    ];
    assert_eq!(verdict("fifo-queue", &reordered), Validity::Invalid);
    let empty_lie = [
        "0 invoke enqueue 1",
        "0 ok enqueue 1",
        "1 invoke dequeue null",
        "1 ok dequeue null",
    ];
    assert_eq!(verdict("fifo-queue", &empty_lie), Validity::Invalid);
    let maybe = [
        "0 invoke enqueue 3",
        "0 info enqueue 3",
        "1 invoke dequeue null",
        "1 ok dequeue 3",
    ];
    assert_eq!(verdict("fifo-queue", &maybe), Validity::Valid);
    let phantom = [
        "0 invoke enqueue 3",
        "0 info enqueue 3",
        "1 invoke dequeue null",
        "1 ok dequeue 4",
    ];
    assert_eq!(verdict("fifo-queue", &phantom), Validity::Invalid);
}

#[test]
fn unknown_model_and_unknown_op_are_clear_errors() {
    let h = history(&["0 invoke frobnicate 1", "0 ok frobnicate 1"]);
    let e = check_named("kv", &h, &CheckOptions::default()).unwrap_err();
    assert!(e.to_string().contains("frobnicate"), "{e}");
    let e = check_named("nope", &h, &CheckOptions::default()).unwrap_err();
    assert!(e.to_string().contains("unknown model `nope`"), "{e}");
}
