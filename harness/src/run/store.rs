//! The run store (docs/run-store.md): `store/<workload>/<timestamp>/` per run and
//! `store/latest` pointing at the newest.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// UTC `YYYYMMDDTHHMMSS.mmmZ` for a time since the epoch (civil-from-days).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Creates a fresh run folder for `workload` under `root`.
pub fn new_run(root: &Path, workload: &str) -> anyhow::Result<PathBuf> {
    let base = root.join(workload);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let mut dir = base.join(timestamp(SystemTime::now()));
    let mut n = 1;
    while dir.exists() {
        dir = base.join(format!("{}-{n}", timestamp(SystemTime::now())));
        n += 1;
    }
    std::fs::create_dir_all(dir.join("nodes"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Points `root/latest` at `run` (relative, replaced atomically).
pub fn point_latest(root: &Path, run: &Path) -> anyhow::Result<()> {
    let rel = run.strip_prefix(root).unwrap_or(run);
    let tmp = root.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(rel, &tmp)
        .with_context(|| format!("cannot link {}", tmp.display()))?;
    std::fs::rename(&tmp, root.join("latest")).context("cannot update store/latest")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "20231114T221320.123Z"
        );
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000.000Z"
        );
    }

    #[test]
    fn latest_points_at_the_newest_run() {
        let root = tempfile::tempdir().unwrap();
        let a = new_run(root.path(), "kv").unwrap();
        point_latest(root.path(), &a).unwrap();
        let b = new_run(root.path(), "kv").unwrap();
        point_latest(root.path(), &b).unwrap();
        assert_eq!(
            std::fs::canonicalize(root.path().join("latest")).unwrap(),
            std::fs::canonicalize(&b).unwrap()
        );
    }
}
