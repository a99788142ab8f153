//! Linearizability checking: split the history by key (P-compositionality), search
//! each key's ops on its own core, merge the verdicts.

mod compose;
mod frontier;
mod interning;
mod memo;
mod reachable;
mod search;
mod whole;

pub use compose::composed;
pub use whole::Whole;

pub(crate) use memo::FxBuild;

/// SplitMix64 finalizer, shared with the history generator.
pub(crate) fn splitmix_public(x: u64) -> u64 {
    memo::splitmix64(x)
}

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::budget::{Budget, Exhausted};
use crate::history::{History, Op, Outcome};
use crate::model::{Model, ModelError, ValueTable};
use crate::validity::Validity;
use crate::value::{Key, Value};

use frontier::Frontier;
use interning::Interning;
use memo::{ExactMemo, FingerprintMemo, InlineMemo, Memo};
use search::{Search, SearchStats, Stuck, Verdict};

/// Default memory budget for the visited sets: 2 GiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 30;

/// How to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Check each key on its own (sound when ops on different keys are independent).
    pub partition: bool,
    /// Give up with `unknown` after this long.
    pub time_limit: Option<Duration>,
    /// Give up with `unknown` before the visited sets take more than this many bytes.
    pub memory_limit: usize,
    /// Stop the other keys once one key is found invalid.
    pub stop_at_first_invalid: bool,
    /// Try only one of several equal open ops (see `search::twins`). Always sound;
    /// off only to test that claim against the plain search.
    pub symmetry: bool,
    /// Before searching a key, refute any op that no state reachable by the key's
    /// ops accepts (see `reachable`). Always sound; off only for comparisons.
    pub reachability: bool,
    /// Which searches decide each key (see [`Engine`]).
    pub engine: Engine,
}

/// The searches a key's check may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Engine {
    /// The depth-first search; on keys of more than 256 ops, in turns with the
    /// configuration-set sweep, the first to decide answering.
    #[default]
    Both,
    /// The depth-first search alone.
    Search,
    /// The configuration-set sweep alone (the search only where more than 128 ops
    /// are open at once).
    Sweep,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            partition: true,
            time_limit: None,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            stop_at_first_invalid: true,
            symmetry: true,
            reachability: true,
            engine: Engine::Both,
        }
    }
}

/// An operation as a result names it: where it is in the file and what it did.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpView {
    /// Index in the history's op list (invocation order).
    pub index: usize,
    /// Client process.
    pub process: i64,
    /// Operation name.
    pub f: String,
    /// Key, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    /// The invocation's argument.
    pub value: Value,
    /// The completion's result; absent when indeterminate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// `ok` or `info` (indeterminate).
    pub outcome: &'static str,
    /// Line of the invoke.
    pub invoke_line: u64,
    /// Line of the completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_line: Option<u64>,
    /// Invoke time (ns), when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_time: Option<i64>,
    /// Completion time (ns), when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<i64>,
}

impl OpView {
    /// The view of `history.ops[index]`.
    pub fn of(history: &History, index: usize) -> OpView {
        let op: &Op = &history.ops[index];
        let (output, outcome) = match &op.output {
            Outcome::Ok(v) => (Some(v.clone()), "ok"),
            Outcome::Unknown => (None, "info"),
        };
        OpView {
            index,
            process: op.process,
            f: op.f.to_string(),
            key: op.key.map(|k| history.keys[k as usize].clone()),
            value: op.input.clone(),
            output,
            outcome,
            invoke_line: op.line,
            complete_line: op.ret_line,
            invoke_time: op.call_time,
            complete_time: op.ret_time,
        }
    }
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug, Serialize)]
pub struct Counterexample {
    /// The key, when the history is partitioned by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    /// The op whose completion came before any order could place it.
    pub op: OpView,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<OpView>,
    /// The model's state after that prefix.
    pub state: Value,
    /// Ops invoked before `op` completed that could not go next either.
    pub pending: Vec<OpView>,
    /// True when the refutation was repeated with an exact visited set (no
    /// fingerprints) and held.
    pub exact: bool,
    /// Set when the op was refuted before any search: no state the key's ops can
    /// reach, in any order, accepts it (the prefix is then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Search counters summed over keys.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckStats {
    /// Model steps attempted.
    pub steps: u64,
    /// Distinct (linearized set, state) pairs stored.
    pub visited: u64,
    /// Backtracks.
    pub backtracks: u64,
    /// Most bytes the visited sets held at once.
    pub peak_memo_bytes: usize,
    /// Wall time of the check, excluding reading the file.
    pub elapsed_ms: f64,
}

/// Why the answer is unknown.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownCause {
    /// The limit that ran out.
    pub reason: Exhausted,
    /// Keys left undecided (at most 20 named).
    pub keys: Vec<String>,
    /// How many keys were left undecided.
    pub count: usize,
}

/// The linearizability checker's result (the `linearizable` entry of result object, docs/results.md).
#[derive(Clone, Debug, Serialize)]
pub struct Linearizability {
    /// true, false or "unknown".
    pub valid: Validity,
    /// Model used.
    pub model: String,
    /// Whether keys were checked independently.
    pub partitioned: bool,
    /// Number of independent histories checked.
    pub keys: usize,
    /// Ops checked (ok and indeterminate; failed ops are dropped).
    pub ops: usize,
    /// Of which indeterminate.
    pub indeterminate: usize,
    /// Set when `valid` is "unknown".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<UnknownCause>,
    /// One counterexample per invalid key found (the search stops the others
    /// after the first unless told not to).
    pub failures: Vec<Counterexample>,
    /// Counters.
    pub stats: CheckStats,
}

impl Linearizability {
    /// One line: the model, what was checked, what failed or why it gave up.
    pub fn summary(&self) -> String {
        let gave_up = self.unknown.as_ref().map_or(String::new(), |u| {
            format!(", gave up ({:?}) on {} key(s)", u.reason, u.count).to_lowercase()
        });
        format!(
            "model {}, {} ops ({} indeterminate) over {} key(s), {} failing key(s){gave_up}",
            self.model,
            self.ops,
            self.indeterminate,
            self.keys,
            self.failures.len()
        )
    }

    /// As a [`crate::CheckerResult`].
    pub fn result(&self) -> crate::CheckerResult {
        crate::CheckerResult::new(self.valid, self.summary(), self)
    }
}

enum KeyVerdict {
    /// With the order the search found (history indices); none from the sweep.
    Valid(Option<Vec<usize>>),
    Invalid(Box<Counterexample>),
    Unknown(Exhausted),
}

struct KeyResult {
    group: usize,
    verdict: KeyVerdict,
    stats: SearchStats,
}

/// Steps a key's search runs before yielding its core to the next key.
const SLICE_STEPS: u64 = 1 << 16;

/// Checks `history` against `model`.
///
/// Keys are searched in turns of [`SLICE_STEPS`] on every core, so one hard key
/// cannot hide a quick refutation on another.
pub fn check<M: Model + Sync>(
    model: &M,
    history: &History,
    options: &CheckOptions,
) -> Result<Linearizability, ModelError> {
    Ok(check_with_orders(model, history, options)?.0)
}

/// Per key group, the order its ops were linearized in (history indices), if known.
type KeyOrders = Vec<Option<Vec<usize>>>;

/// As [`check`], with each key's linearization (history indices) where the
/// depth-first search found one.
fn check_with_orders<M: Model + Sync>(
    model: &M,
    history: &History,
    options: &CheckOptions,
) -> Result<(Linearizability, KeyOrders), ModelError> {
    let started = Instant::now();
    let budget = Budget::new(options.time_limit, options.memory_limit);
    let groups = partition(history, options.partition);
    let indeterminate = history.ops.iter().filter(|o| o.is_indeterminate()).count();
    let results = if M::INTERN {
        schedule(
            &groups,
            |g| {
                Task::prepare(
                    Interning::new(model),
                    history,
                    &groups[g].1,
                    g,
                    options.symmetry,
                    false,
                    options.engine,
                )
            },
            history,
            &groups,
            &budget,
            options,
        )?
    } else {
        schedule(
            &groups,
            |g| {
                Task::prepare(
                    model,
                    history,
                    &groups[g].1,
                    g,
                    options.symmetry,
                    options.reachability,
                    options.engine,
                )
            },
            history,
            &groups,
            &budget,
            options,
        )?
    };

    let mut stats = CheckStats::default();
    let mut failures = Vec::new();
    let mut orders: KeyOrders = vec![None; groups.len()];
    let mut undecided = Vec::new();
    let mut reason = None;
    for r in results {
        stats.steps += r.stats.steps;
        stats.visited += r.stats.visited;
        stats.backtracks += r.stats.backtracks;
        match r.verdict {
            KeyVerdict::Valid(order) => orders[r.group] = order,
            KeyVerdict::Invalid(c) => failures.push(*c),
            KeyVerdict::Unknown(why) => {
                if why != Exhausted::Cancelled || reason.is_none() {
                    reason = Some(why);
                }
                undecided.push(match groups[r.group].0 {
                    Some(k) => history.keys[k as usize].to_string(),
                    None => "(no key)".to_string(),
                });
            }
        }
    }
    stats.peak_memo_bytes = budget.peak_bytes();
    stats.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let (valid, unknown) = if !failures.is_empty() {
        (Validity::Invalid, None)
    } else if let Some(reason) = reason {
        let count = undecided.len();
        undecided.truncate(20);
        (
            Validity::Unknown,
            Some(UnknownCause {
                reason,
                keys: undecided,
                count,
            }),
        )
    } else {
        (Validity::Valid, None)
    };
    let result = Linearizability {
        valid,
        model: model.name().to_string(),
        partitioned: options.partition,
        keys: groups.len(),
        ops: history.ops.len(),
        indeterminate,
        unknown,
        failures,
        stats,
    };
    Ok((result, orders))
}

/// Op indices grouped by key (one group when not partitioning), in key order.
fn partition(history: &History, by_key: bool) -> Vec<(Option<u32>, Vec<u32>)> {
    if !by_key {
        return vec![(None, (0..history.ops.len() as u32).collect())];
    }
    let mut slot: HashMap<Option<u32>, usize> = HashMap::new();
    let mut groups: Vec<(Option<u32>, Vec<u32>)> = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        let g = *slot.entry(op.key).or_insert_with(|| {
            groups.push((op.key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i as u32);
    }
    groups
}

/// Runs every group's task in turns on all cores; results in group order.
fn schedule<N, F>(
    groups: &[(Option<u32>, Vec<u32>)],
    make: F,
    history: &History,
    all: &[(Option<u32>, Vec<u32>)],
    budget: &Budget,
    options: &CheckOptions,
) -> Result<Vec<KeyResult>, ModelError>
where
    N: Fork + Send,
    N::Op: Send,
    N::State: Send,
    F: Fn(usize) -> Result<Task<N>, ModelError> + Sync,
{
    let tasks: Result<Vec<Task<N>>, ModelError> =
        (0..groups.len()).into_par_iter().map(&make).collect();
    let queue: Mutex<VecDeque<Task<N>>> = Mutex::new(tasks?.into());
    let in_flight = AtomicUsize::new(groups.len());
    let results: Mutex<Vec<KeyResult>> = Mutex::new(Vec::with_capacity(groups.len()));
    let workers = rayon::current_num_threads().clamp(1, groups.len().max(1));
    let work = || loop {
        let task = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
        let Some(mut task) = task else {
            if in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            // Another worker holds the last tasks; wait for one to come back.
            std::thread::sleep(std::time::Duration::from_micros(100));
            continue;
        };
        match task.run(SLICE_STEPS, history, all, budget) {
            None => queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(task),
            Some(result) => {
                if matches!(result.verdict, KeyVerdict::Invalid(_)) && options.stop_at_first_invalid
                {
                    budget.cancel();
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(result);
                in_flight.fetch_sub(1, Ordering::Release);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..workers {
            scope.spawn(work);
        }
        work();
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|r| r.group);
    Ok(results)
}

enum Phase<N: Model> {
    /// A history of at most 128 ops, searched with an exact inline memo.
    Small(Search<N, InlineMemo<N::State, 2>>),
    /// At most 256 ops, likewise.
    Medium(Search<N, InlineMemo<N::State, 4>>),
    /// Searching with the fingerprint memo, in turns with the configuration-set
    /// sweep (dropped when too many ops are open at once); the first to decide wins.
    Fast(Search<N, FingerprintMemo<N::State>>, Option<Frontier<N>>),
    /// The sweep alone; the search takes over only if the sweep is too wide.
    SweepFirst(Search<N, FingerprintMemo<N::State>>, Frontier<N>),
    /// Repeating a refutation with the exact memo; the fast search's finding kept.
    Exact(Search<N, ExactMemo<N::State>>, Stuck<N::State>),
    /// Refuted before searching (see `reachable`).
    Impossible(N, reachable::Impossible),
    Done,
}

/// One key's check, paused between turns.
struct Task<N: Model> {
    group: usize,
    source: Vec<usize>,
    values: ValueTable,
    phase: Phase<N>,
    stats: SearchStats,
    symmetry: bool,
    /// Time the search and the sweep have had on this key, to give them equal turns
    /// (a sweep step costs far more than a search step).
    spent: [Duration; 2],
}

/// What one turn of a search came to.
enum Turn<V> {
    Paused(V),
    Decided(KeyVerdict),
}

/// A model the configuration-set sweep can take a copy of beside the search.
trait Fork: Model + Sized {
    fn fork(&self) -> Self;
}

impl<M: Model> Fork for &M {
    fn fork(&self) -> Self {
        self
    }
}

impl<M: Model> Fork for Interning<'_, M> {
    fn fork(&self) -> Self {
        Interning::fork(self)
    }
}

impl<N: Fork> Task<N> {
    /// Translates one key's ops into the model's terms; with `closure`, first looks
    /// for an op no reachable state accepts (skipped for models whose states grow
    /// without bound).
    fn prepare(
        model: N,
        history: &History,
        members: &[u32],
        group: usize,
        symmetry: bool,
        closure: bool,
        engine: Engine,
    ) -> Result<Self, ModelError> {
        let mut values = ValueTable::new();
        let mut ops = Vec::with_capacity(members.len());
        let mut call = Vec::with_capacity(members.len());
        let mut ret = Vec::with_capacity(members.len());
        let mut source = Vec::with_capacity(members.len());
        for &i in members {
            let op = &history.ops[i as usize];
            if let Some(prepared) = model.prepare(op, &mut values)? {
                ops.push(prepared);
                call.push(op.call);
                ret.push(op.ret);
                source.push(i as usize);
            }
        }
        // Small keys are searched exhaustively in moments and their counterexample
        // carries the longest prefix; the pass pays off only where the search may not.
        let impossible = if closure && ops.len() > 256 {
            reachable::impossible_op(&model, &ops, &ret)
        } else {
            None
        };
        let phase = match (impossible, ops.len()) {
            (Some(found), _) => Phase::Impossible(model, found),
            (None, _) if engine == Engine::Sweep => {
                let sweep = Frontier::new(model.fork(), ops.clone(), &call, &ret);
                Phase::SweepFirst(
                    Search::new(model, ops, call, ret, FingerprintMemo::new())
                        .with_symmetry(symmetry),
                    sweep,
                )
            }
            (None, 0..=128) => Phase::Small(
                Search::new(model, ops, call, ret, InlineMemo::new()).with_symmetry(symmetry),
            ),
            (None, 129..=256) => Phase::Medium(
                Search::new(model, ops, call, ret, InlineMemo::new()).with_symmetry(symmetry),
            ),
            (None, _) => {
                let sweep = (engine == Engine::Both)
                    .then(|| Frontier::new(model.fork(), ops.clone(), &call, &ret));
                Phase::Fast(
                    Search::new(model, ops, call, ret, FingerprintMemo::new())
                        .with_symmetry(symmetry),
                    sweep,
                )
            }
        };
        Ok(Task {
            group,
            source,
            values,
            phase,
            stats: SearchStats::default(),
            symmetry,
            spent: [Duration::ZERO; 2],
        })
    }

    /// The order `search` linearized this key's ops in, as history indices.
    fn order<V: Memo<N::State>>(&self, search: &Search<N, V>) -> Vec<usize> {
        search
            .linearized()
            .iter()
            .map(|&i| self.source[i as usize])
            .collect()
    }

    /// Runs an exact search for a turn.
    fn exact_turn<V: Memo<N::State>>(
        &mut self,
        mut search: Search<N, V>,
        steps: u64,
        history: &History,
        key: Option<u32>,
        budget: &Budget,
    ) -> Turn<Search<N, V>> {
        let Some(verdict) = search.advance(steps, budget) else {
            return Turn::Paused(search);
        };
        search.release(budget);
        self.stats.add(&search.stats);
        Turn::Decided(match verdict {
            Verdict::Valid => KeyVerdict::Valid(Some(self.order(&search))),
            Verdict::Unknown(why) => KeyVerdict::Unknown(why),
            Verdict::Invalid(stuck) => KeyVerdict::Invalid(Box::new(self.counterexample(
                &search.model,
                history,
                key,
                stuck,
                true,
            ))),
        })
    }

    /// Runs one turn; the key's result once it is decided.
    fn run(
        &mut self,
        steps: u64,
        history: &History,
        groups: &[(Option<u32>, Vec<u32>)],
        budget: &Budget,
    ) -> Option<KeyResult> {
        let key = groups[self.group].0;
        let verdict = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Small(search) => match self.exact_turn(search, steps, history, key, budget) {
                Turn::Paused(search) => {
                    self.phase = Phase::Small(search);
                    return None;
                }
                Turn::Decided(v) => v,
            },
            Phase::Medium(search) => match self.exact_turn(search, steps, history, key, budget) {
                Turn::Paused(search) => {
                    self.phase = Phase::Medium(search);
                    return None;
                }
                Turn::Decided(v) => v,
            },
            Phase::SweepFirst(search, mut f) => match f.advance(steps, budget) {
                None => {
                    self.phase = Phase::SweepFirst(search, f);
                    return None;
                }
                Some(frontier::Outcome::TooWide) => {
                    f.release(budget);
                    self.phase = Phase::Fast(search, None);
                    return None;
                }
                Some(outcome) => {
                    f.release(budget);
                    self.stats.steps += f.created;
                    match outcome {
                        frontier::Outcome::Valid => KeyVerdict::Valid(None),
                        frontier::Outcome::Unknown(why) => KeyVerdict::Unknown(why),
                        frontier::Outcome::Invalid(refuted) => KeyVerdict::Invalid(Box::new(
                            self.refutation(&f.model, history, key, refuted),
                        )),
                        frontier::Outcome::TooWide => unreachable!("handled above"),
                    }
                }
            },
            Phase::Fast(mut search, mut sweep) => {
                let sweep_turn = sweep.is_some() && self.spent[1] <= self.spent[0];
                if let Some(mut f) = sweep.take_if(|_| sweep_turn) {
                    let began = Instant::now();
                    let outcome = f.advance(steps / 16, budget);
                    self.spent[1] += began.elapsed();
                    match outcome {
                        None => {
                            self.phase = Phase::Fast(search, Some(f));
                            return None;
                        }
                        Some(frontier::Outcome::TooWide) => f.release(budget),
                        Some(outcome) => {
                            f.release(budget);
                            search.release(budget);
                            self.stats.add(&search.stats);
                            self.stats.steps += f.created;
                            let verdict = match outcome {
                                frontier::Outcome::Valid => KeyVerdict::Valid(None),
                                frontier::Outcome::Unknown(why) => KeyVerdict::Unknown(why),
                                frontier::Outcome::Invalid(refuted) => KeyVerdict::Invalid(
                                    Box::new(self.refutation(&f.model, history, key, refuted)),
                                ),
                                frontier::Outcome::TooWide => unreachable!("handled above"),
                            };
                            return Some(KeyResult {
                                group: self.group,
                                verdict,
                                stats: self.stats,
                            });
                        }
                    }
                }
                let began = Instant::now();
                let verdict = search.advance(steps, budget);
                self.spent[0] += began.elapsed();
                match verdict {
                    None => {
                        self.phase = Phase::Fast(search, sweep);
                        return None;
                    }
                    Some(verdict) => {
                        if let Some(mut f) = sweep {
                            f.release(budget);
                        }
                        search.release(budget);
                        self.stats.add(&search.stats);
                        match verdict {
                            Verdict::Valid => KeyVerdict::Valid(Some(self.order(&search))),
                            Verdict::Unknown(why) => KeyVerdict::Unknown(why),
                            Verdict::Invalid(stuck) => {
                                // Fingerprints can only wrongly prune: repeat the refutation exactly.
                                let Search {
                                    model,
                                    ops,
                                    call,
                                    ret,
                                    ..
                                } = search;
                                self.phase = Phase::Exact(
                                    Search::new(model, ops, call, ret, ExactMemo::new())
                                        .with_symmetry(self.symmetry),
                                    stuck,
                                );
                                return None;
                            }
                        }
                    }
                }
            }
            Phase::Exact(mut search, stuck) => match search.advance(steps, budget) {
                None => {
                    self.phase = Phase::Exact(search, stuck);
                    return None;
                }
                Some(verdict) => {
                    search.release(budget);
                    self.stats.add(&search.stats);
                    let model = &search.model;
                    match verdict {
                        Verdict::Valid => KeyVerdict::Valid(Some(self.order(&search))),
                        Verdict::Invalid(exact) => KeyVerdict::Invalid(Box::new(
                            self.counterexample(model, history, key, exact, true),
                        )),
                        // The exact repeat ran out of budget: keep the fast finding.
                        Verdict::Unknown(_) => KeyVerdict::Invalid(Box::new(
                            self.counterexample(model, history, key, stuck, false),
                        )),
                    }
                }
            },
            Phase::Impossible(model, found) => {
                let stuck = Stuck {
                    prefix: Vec::new(),
                    state: model.init(),
                    blocked: found.op,
                    pending: Vec::new(),
                };
                let mut c = self.counterexample(&model, history, key, stuck, true);
                c.reason = Some(format!(
                    "no order of this key's operations reaches a state in which this one can happen ({} reachable states, each tried)",
                    found.states
                ));
                KeyVerdict::Invalid(Box::new(c))
            }
            Phase::Done => return None,
        };
        Some(KeyResult {
            group: self.group,
            verdict,
            stats: self.stats,
        })
    }

    /// The counterexample of a refutation by the configuration-set sweep: no
    /// prefix (the sweep keeps none), the states every order could be in instead.
    fn refutation(
        &self,
        model: &N,
        history: &History,
        key: Option<u32>,
        refuted: frontier::Refuted<N::State>,
    ) -> Counterexample {
        let view = |i: u32| OpView::of(history, self.source[i as usize]);
        let shown: Vec<Value> = refuted
            .states
            .iter()
            .map(|s| model.show(s, &self.values))
            .collect();
        let listed = shown
            .iter()
            .take(10)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let more = if shown.len() > 10 { ", ..." } else { "" };
        Counterexample {
            key: key.map(|k| history.keys[k as usize].clone()),
            op: view(refuted.blocked),
            prefix: Vec::new(),
            state: shown.first().cloned().unwrap_or(Value::Null),
            pending: refuted.pending.iter().map(|&i| view(i)).collect(),
            exact: true,
            reason: Some(format!(
                "every order of the operations before its return was followed ({} configurations at that moment); in none did this one take effect: the state could only be {listed}{more}",
                refuted.configs
            )),
        }
    }

    fn counterexample(
        &self,
        model: &N,
        history: &History,
        key: Option<u32>,
        stuck: Stuck<N::State>,
        exact: bool,
    ) -> Counterexample {
        let view = |i: u32| OpView::of(history, self.source[i as usize]);
        Counterexample {
            key: key.map(|k| history.keys[k as usize].clone()),
            op: view(stuck.blocked),
            prefix: stuck.prefix.iter().map(|&i| view(i)).collect(),
            state: model.show(&stuck.state, &self.values),
            pending: stuck.pending.iter().map(|&i| view(i)).collect(),
            exact,
            reason: None,
        }
    }
}

/// The result for a history refuted before any search (see [`crate::versions`]).
pub fn refuted(
    model: &str,
    history: &History,
    options: &CheckOptions,
    refutation: crate::versions::Refutation,
) -> Linearizability {
    let keys = if options.partition {
        history
            .ops
            .iter()
            .map(|o| o.key)
            .collect::<std::collections::HashSet<_>>()
            .len()
    } else {
        1
    };
    let failure = Counterexample {
        key: refutation
            .key
            .filter(|_| options.partition)
            .map(|k| history.keys[k as usize].clone()),
        op: OpView::of(history, refutation.op),
        prefix: Vec::new(),
        state: Value::Null,
        pending: Vec::new(),
        exact: true,
        reason: Some(refutation.reason),
    };
    Linearizability {
        valid: Validity::Invalid,
        model: model.to_string(),
        partitioned: options.partition,
        keys,
        ops: history.ops.len(),
        indeterminate: history.ops.iter().filter(|o| o.is_indeterminate()).count(),
        unknown: None,
        failures: vec![failure],
        stats: CheckStats::default(),
    }
}
