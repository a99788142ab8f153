//! How a run fared under its faults: the share of ops that succeeded while a
//! fault was in force, and how long after each heal the first op succeeded.
//! The bench's fault runs report these beside the fault-free throughput.

use crate::data::{FaultWindow, OpRecord, Outcome};

/// Availability and recovery of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// Stretches of time with at least one fault in force (overlapping faults
    /// count once).
    pub stretches: usize,
    /// Ops invoked during a stretch.
    pub ops_during: u64,
    /// Of those, the ones that succeeded.
    pub ok_during: u64,
    /// Per stretch that healed and recovered before the next began: ms from
    /// the heal to the completion of the first op invoked after it that
    /// succeeded.
    pub recovery_ms: Vec<f64>,
    /// Stretches after which no op succeeded before the next fault or the end.
    pub unrecovered: usize,
    /// Stretches healed with no op in flight, or with the load ending before
    /// any op was invoked after the heal: nothing to measure.
    pub idle_heals: usize,
}

impl Recovery {
    /// Percent of the ops invoked under faults that succeeded; `None` if none was.
    pub fn availability_percent(&self) -> Option<f64> {
        (self.ops_during > 0).then(|| 100.0 * self.ok_during as f64 / self.ops_during as f64)
    }
}

/// Merges fault windows into stretches of time when any fault was in force.
fn stretches(faults: &[FaultWindow]) -> Vec<(u64, u64)> {
    let mut w: Vec<(u64, u64)> = faults.iter().map(|f| (f.start, f.end)).collect();
    w.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in w {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Measures `ops` (times in ns) against the fault windows of the same run;
/// `load_end`: when the load stopped (see [`crate::data::Run::load_end`]), so
/// the final reads after it are not taken for recovery.
pub fn measure(ops: &[OpRecord], faults: &[FaultWindow], load_end: Option<u64>) -> Recovery {
    let load_end = load_end.unwrap_or(u64::MAX);
    let spans = stretches(faults);
    let mut r = Recovery {
        stretches: spans.len(),
        ops_during: 0,
        ok_during: 0,
        recovery_ms: Vec::new(),
        unrecovered: 0,
        idle_heals: 0,
    };
    for op in ops {
        if spans.iter().any(|&(s, e)| s <= op.start && op.start < e) {
            r.ops_during += 1;
            r.ok_during += u64::from(op.outcome == Outcome::Ok);
        }
    }
    for (k, &(_, heal)) in spans.iter().enumerate() {
        let after = |o: &&OpRecord| o.start >= heal && o.start < load_end;
        if !ops.iter().any(|o| o.start <= heal && heal < o.end) || !ops.iter().any(|o| after(&o)) {
            r.idle_heals += 1;
            continue;
        }
        let next = spans.get(k + 1).map_or(u64::MAX, |n| n.0);
        let first = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && after(o))
            .map(|o| o.end)
            .min();
        match first {
            Some(end) if end <= next => r.recovery_ms.push((end - heal) as f64 / 1e6),
            _ => r.unrecovered += 1,
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(start_ms: u64, end_ms: u64, outcome: Outcome) -> OpRecord {
        OpRecord {
            process: 0,
            f: 0,
            key: None,
            input: "1".into(),
            output: None,
            start: start_ms * 1_000_000,
            end: end_ms * 1_000_000,
            outcome,
            line: 1,
        }
    }

    fn fault(kind: &str, start_ms: u64, end_ms: u64) -> FaultWindow {
        FaultWindow {
            kind: kind.into(),
            detail: "{}".into(),
            start: start_ms * 1_000_000,
            end: end_ms * 1_000_000,
        }
    }

    #[test]
    fn overlapping_faults_are_one_stretch_and_recovery_counts_from_its_heal() {
        let faults = [
            fault("partition", 100, 300),
            fault("kill", 200, 400),
            fault("pause", 1000, 1100),
        ];
        let ops = [
            op(50, 90, Outcome::Ok),
            op(1090, 1110, Outcome::Fail),
            // Under faults: one of three succeeds.
            op(150, 160, Outcome::Ok),
            op(250, 1000, Outcome::Info),
            op(390, 420, Outcome::Fail),
            // Invoked before the heal at 400: not a sign of recovery.
            op(395, 405, Outcome::Ok),
            // The first success invoked after the heal ends at 470.
            op(410, 480, Outcome::Ok),
            op(420, 470, Outcome::Ok),
            // Nothing succeeds after the second stretch.
            op(1050, 1200, Outcome::Fail),
            op(1150, 1300, Outcome::Info),
        ];
        let r = measure(&ops, &faults, None);
        assert_eq!(r.stretches, 2);
        assert_eq!((r.ops_during, r.ok_during), (6, 2), "{r:?}");
        assert_eq!(r.recovery_ms, vec![70.0]);
        assert_eq!(r.unrecovered, 1);
        assert_eq!(r.availability_percent(), Some(100.0 / 3.0));
    }

    #[test]
    fn a_success_after_the_next_fault_began_is_no_recovery_and_no_faults_no_figures() {
        let faults = [
            fault("kill", 0, 100),
            fault("kill", 150, 200),
            fault("kill", 300, 400),
        ];
        let ops = [
            op(90, 110, Outcome::Fail),
            op(120, 160, Outcome::Ok),
            op(190, 205, Outcome::Info),
            op(210, 230, Outcome::Ok),
            // The last heal at 400 finds nothing in flight, and a final read
            // long after it measures no recovery.
            op(900, 910, Outcome::Ok),
        ];
        let r = measure(&ops, &faults, None);
        assert_eq!(r.recovery_ms, vec![30.0]);
        assert_eq!((r.unrecovered, r.idle_heals), (1, 1));
        // A heal as the load ends (at 205, with an op still in flight): what
        // follows is the final reads, no recovery.
        let r = measure(&ops, &faults, Some(205_000_000));
        assert_eq!(r.recovery_ms, Vec::<f64>::new());
        assert_eq!((r.unrecovered, r.idle_heals), (1, 2));
        let none = measure(&ops, &[], None);
        assert_eq!((none.stretches, none.availability_percent()), (0, None));
        assert!(none.recovery_ms.is_empty());
    }
}
