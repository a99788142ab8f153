//! View change: a backup whose clients wait too long leaves the view; the next
//! primary gathers 2f+1 view changes, re-proposes every batch any of them
//! proves prepared (the one from the latest view) and fills the other holes
//! with null requests, and every replica checks that new-view against the view
//! changes it carries before entering the view.

use std::collections::BTreeMap;
use std::time::Instant;

use super::message::{digest_of, Batch, Body, Prepared, Signed};
use super::{Pbft, Record};
use crate::consensus::StateMachine;
use crate::log_line;

/// How far past its own view a replica keeps others' view changes.
const VIEWS_AHEAD: u64 = 64;
/// The longest a view change waits, as a multiple of the base timeout.
const MAX_BACKOFF: u32 = 8;

impl<S: StateMachine> Pbft<S> {
    /// Leaves the current view for `view`: stops taking its messages, and
    /// tells every replica what this one has prepared since its stable checkpoint.
    pub(super) fn start_view_change(&mut self, view: u64, now: Instant) {
        if view <= self.view && self.changing {
            return;
        }
        log_line!(
            self.cfg.who(),
            "view change: leaving view {} for {view} (executed {})",
            self.view,
            self.executed
        );
        self.view = view;
        self.changing = true;
        self.queue.clear();
        self.ordered.clear();
        self.forwards.clear();
        self.vc_deadline = now + self.vc_timeout;
        self.vc_timeout = (self.vc_timeout * 2).min(self.cfg.election_timeout * MAX_BACKOFF);
        self.journal.append(&Record::View {
            view,
            changing: true,
        });
        let prepared: Vec<Prepared> = self
            .slots
            .keys()
            .filter(|seq| **seq > self.stable)
            .filter_map(|seq| {
                let views = &self.slots[seq].views;
                views.keys().rev().find_map(|v| self.certificate(*seq, *v))
            })
            .collect();
        self.multicast(Body::ViewChange {
            view,
            stable: self.stable,
            stable_proof: self.stable_proof.clone(),
            prepared,
        });
    }

    /// Checks a view change: its checkpoint proof and each prepared
    /// certificate, every message authentic and from the right replica.
    fn valid_view_change(&self, msg: &Signed) -> bool {
        let Body::ViewChange {
            view,
            stable,
            stable_proof,
            prepared,
        } = &msg.body
        else {
            return false;
        };
        if msg.from == self.cfg.id {
            return true;
        }
        if *stable > 0 {
            let Some(Body::Checkpoint { digest, .. }) = stable_proof.first().map(|m| &m.body)
            else {
                return false;
            };
            let n = self.count_valid(stable_proof, |b| {
                matches!(b, Body::Checkpoint { seq, digest: d } if seq == stable && d == digest)
            });
            if n < self.quorum() {
                return false;
            }
        }
        prepared.iter().all(|p| {
            let Some((v, seq, digest, _)) = self.valid_pre_prepare(&p.pre_prepare) else {
                return false;
            };
            let primary = self.primary(v).clone();
            let backups: Vec<Signed> = p
                .prepares
                .iter()
                .filter(|m| m.from != primary)
                .cloned()
                .collect();
            let n = self.count_valid(&backups, |b| {
                matches!(b, Body::Prepare { view: pv, seq: s, digest: d } if *pv == v && *s == seq && *d == digest)
            });
            v < *view && seq > *stable && n >= self.prepare_quorum()
        })
    }

    pub(super) fn on_view_change(&mut self, msg: Signed) {
        let Body::ViewChange { view, .. } = &msg.body else {
            return;
        };
        let view = *view;
        if view < self.view || (view == self.view && !self.changing) {
            // A replica behind a view change that finished: send it the new-view.
            if view == self.view && *self.primary(view) == self.cfg.id {
                if let Some(nv) = self.last_new_view.clone() {
                    self.after_sync.push((msg.from.clone(), nv));
                }
            }
            return;
        }
        if !self.valid_view_change(&msg) {
            self.drop_message(&msg.from, "a view change with an invalid proof");
            return;
        }
        // Views far ahead are not kept, so a liar sending a view change for
        // every view cannot fill memory. (Each replica's older view changes
        // must stay: they may still make the quorum that lets the others
        // go past a view whose primary is dead.)
        if view > self.view + VIEWS_AHEAD {
            self.drop_message(&msg.from, "a view change too far ahead");
            return;
        }
        self.view_changes
            .entry(view)
            .or_default()
            .insert(msg.from.clone(), msg);
        // f+1 other replicas want views past this one: join the lowest.
        let mut lowest: BTreeMap<&crate::types::NodeId, u64> = BTreeMap::new();
        for (v, senders) in self.view_changes.range(self.view + 1..) {
            for from in senders.keys().filter(|f| **f != self.cfg.id) {
                lowest.entry(from).or_insert(*v);
            }
        }
        if lowest.len() > self.f {
            let v = lowest.values().copied().min().unwrap_or(view);
            self.start_view_change(v, Instant::now());
        }
        self.try_new_view();
    }

    /// What a new view re-proposes: from the highest stable checkpoint in
    /// `changes` to the highest prepared sequence number, the batch of the
    /// latest view that prepared it, or a null request.
    fn new_view_batches(&self, changes: &[Signed]) -> (u64, BTreeMap<u64, Batch>) {
        let mut low = 0;
        let mut best: BTreeMap<u64, (u64, Batch)> = BTreeMap::new();
        for m in changes {
            let Body::ViewChange {
                stable, prepared, ..
            } = &m.body
            else {
                continue;
            };
            low = low.max(*stable);
            for p in prepared {
                if let Body::PrePrepare {
                    view, seq, batch, ..
                } = &p.pre_prepare.body
                {
                    if best.get(seq).is_none_or(|(v, _)| v < view) {
                        best.insert(*seq, (*view, batch.clone()));
                    }
                }
            }
        }
        let high = best.keys().next_back().copied().unwrap_or(low).max(low);
        let batches = (low.saturating_add(1)..=high)
            .map(|seq| {
                let batch = best.get(&seq).map(|(_, b)| b.clone()).unwrap_or_default();
                (seq, batch)
            })
            .collect();
        (low, batches)
    }

    /// The new primary, with 2f+1 view changes for its view, starts it.
    fn try_new_view(&mut self) {
        let view = self.view;
        if !self.changing || *self.primary(view) != self.cfg.id {
            return;
        }
        let changes: Vec<Signed> = self
            .view_changes
            .get(&view)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if changes.len() < self.quorum() {
            return;
        }
        let (_, batches) = self.new_view_batches(&changes);
        let pre_prepares: Vec<Signed> = batches
            .into_iter()
            .map(|(seq, batch)| {
                self.keys.sign(Body::PrePrepare {
                    view,
                    seq,
                    digest: digest_of(&batch),
                    batch,
                })
            })
            .collect();
        log_line!(
            self.cfg.who(),
            "new view {view} from {} view change(s), re-proposing {} sequence number(s)",
            changes.len(),
            pre_prepares.len()
        );
        let body = Body::NewView {
            view,
            view_changes: changes,
            pre_prepares,
        };
        let signed = self.keys.sign(body);
        self.last_new_view = Some(signed.clone());
        for to in self.members.clone() {
            if to != self.cfg.id {
                self.after_sync.push((to, signed.clone()));
            }
        }
        self.on_new_view(signed);
    }

    /// A replica checks a new-view against the view changes it carries, then
    /// enters the view with its pre-prepares.
    pub(super) fn on_new_view(&mut self, msg: Signed) {
        let Body::NewView {
            view,
            view_changes,
            pre_prepares,
        } = &msg.body
        else {
            return;
        };
        let view = *view;
        if view < self.view || (view == self.view && !self.changing) {
            return;
        }
        if msg.from != *self.primary(view) {
            self.drop_message(
                &msg.from,
                "a new-view from a replica that is not its primary",
            );
            return;
        }
        // Only view changes that check out, one per sender, count; the
        // re-proposals are worked out from those alone.
        let mut valid: BTreeMap<&String, Signed> = BTreeMap::new();
        for m in view_changes {
            let for_view = matches!(m.body, Body::ViewChange { view: v, .. } if v == view);
            let own = m.from == self.cfg.id && msg.from == self.cfg.id;
            if for_view && (own || (self.keys.verify(m) && self.valid_view_change(m))) {
                valid.entry(&m.from).or_insert_with(|| m.clone());
            }
        }
        if valid.len() < self.quorum() {
            self.drop_message(
                &msg.from,
                "a new-view without a quorum of valid view changes",
            );
            return;
        }
        let valid: Vec<Signed> = valid.into_values().collect();
        let (low, expected) = self.new_view_batches(&valid);
        let got: Option<BTreeMap<u64, Batch>> = pre_prepares
            .iter()
            .map(|pp| match &pp.body {
                Body::PrePrepare {
                    view: v,
                    seq,
                    digest,
                    batch,
                } if *v == view
                    && pp.from == msg.from
                    && (pp.from == self.cfg.id || self.keys.verify(pp))
                    && *digest == digest_of(batch) =>
                {
                    Some((*seq, batch.clone()))
                }
                _ => None,
            })
            .collect();
        if got.as_ref() != Some(&expected) || pre_prepares.len() != expected.len() {
            self.drop_message(
                &msg.from,
                "a new-view whose pre-prepares its view changes do not imply",
            );
            return;
        }
        let pre_prepares = pre_prepares.clone();
        // State up to the new view's checkpoint comes by fetching, if missing.
        self.highest_seen = self.highest_seen.max(low);
        self.enter_view(view, low, pre_prepares);
    }

    /// Enters `view` in normal operation with the new-view's pre-prepares
    /// (none when joining a view f+1 others already work in).
    pub(super) fn enter_view(&mut self, view: u64, low: u64, pre_prepares: Vec<Signed>) {
        let now = Instant::now();
        log_line!(
            self.cfg.who(),
            "entering view {view} (primary {})",
            self.primary(view)
        );
        self.view = view;
        self.changing = false;
        self.vc_timeout = self.cfg.election_timeout;
        self.vc_deadline = now + self.vc_timeout;
        self.progress_at = now;
        self.queue.clear();
        self.ordered.clear();
        self.forwards.clear();
        self.view_changes = self.view_changes.split_off(&(view + 1));
        self.journal.append(&Record::View {
            view,
            changing: false,
        });
        // Sequence numbers above the re-proposed ones were never prepared by
        // enough replicas to have committed: their old votes go.
        let top = pre_prepares
            .iter()
            .filter_map(|pp| match &pp.body {
                Body::PrePrepare { seq, .. } => Some(*seq),
                _ => None,
            })
            .max();
        for pp in pre_prepares {
            let Body::PrePrepare { seq, batch, .. } = &pp.body else {
                continue;
            };
            let seq = *seq;
            if seq <= self.stable {
                continue;
            }
            for r in batch {
                self.ordered.insert(r.id.clone());
            }
            self.journal.append(&Record::Msg(pp.clone()));
            let votes = self.votes(seq, view);
            votes.pre_prepare = Some(pp);
            votes.vouched = true;
            self.try_prepare(seq);
            self.check_prepared(seq);
            self.check_committed(seq);
        }
        self.floor = low;
        self.next_seq = match top {
            Some(top) => top + 1,
            None => self.next_seq.max(self.executed + 1),
        }
        .max(low + 1);
        // Each waiting request gets a whole timeout in the new view.
        for p in self.pending.values_mut() {
            p.since = now;
        }
        // The new primary orders what it holds from clients; backups pass on
        // what stays waiting (`pass_on_waiting`).
        if *self.primary(view) == self.cfg.id {
            let mut waiting: Vec<super::Request> =
                self.pending.values().map(|p| p.request.clone()).collect();
            waiting.sort_by(|a, b| a.id.cmp(&b.id));
            for r in waiting {
                self.enqueue(r);
            }
        }
    }
}
