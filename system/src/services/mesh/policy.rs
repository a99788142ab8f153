//! Resilience policies of the service-mesh sidecar: circuit breaker, retry backoff
//! and budget, load-balancing policies, phi-accrual failure detection and bulkheads.
//! Each is a pure state machine that takes the time (`now`, in ms) and any random
//! draw as arguments, so runs are deterministic and the tests exact.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Breaker state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Requests flow and their results are counted.
    Closed,
    /// Requests are refused until the cooldown has passed.
    Open,
    /// A few probe requests test whether the instance has recovered.
    HalfOpen,
}

/// When a breaker opens and how it recovers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Open after this many consecutive failures.
    pub failures: u32,
    /// Or open when the failure share of the last `window` results reaches this.
    pub failure_rate: f64,
    /// Results in the sliding window; the rate counts only once it is full.
    pub window: u32,
    /// Open -> half-open after this long.
    pub cooldown_ms: u64,
    /// At most this many requests in flight while half-open.
    pub half_open_probes: u32,
    /// Half-open -> closed after this many successes.
    pub close_after: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            failure_rate: 0.5,
            window: 20,
            cooldown_ms: 1000,
            half_open_probes: 1,
            close_after: 2,
        }
    }
}

impl BreakerConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        at_least("breaker.failures", self.failures, 1)?;
        let rate_ok = self.failure_rate > 0.0 && self.failure_rate <= 1.0;
        if !rate_ok {
            return Err(format!(
                "breaker.failure_rate must be in (0, 1], got {}",
                self.failure_rate
            ));
        }
        at_least("breaker.window", self.window, 1)?;
        at_least("breaker.half_open_probes", self.half_open_probes, 1)?;
        at_least("breaker.close_after", self.close_after, 1)
    }
}

/// The error for an integer field below its minimum, naming the field.
fn at_least<T: PartialOrd + fmt::Display>(field: &str, value: T, min: T) -> Result<(), String> {
    if value < min {
        Err(format!("{field} must be at least {min}, got {value}"))
    } else {
        Ok(())
    }
}

/// One state change, for the log and the checker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// When it changed.
    pub at_ms: u64,
}

/// Circuit breaker for one instance: stops sending to an instance that keeps
/// failing, then lets a few probes through after a cooldown to see if it is back.
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    never_opens: bool,
    state: BreakerState,
    consecutive: u32,
    /// The last results while closed, oldest first; `true` marks a failure.
    recent: VecDeque<bool>,
    recent_failures: u32,
    opened_at: u64,
    probes_in_flight: u32,
    probe_successes: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker::with_bug(config, false)
    }

    /// `never_opens` is a planted bug switch: results are counted but the breaker
    /// never leaves Closed.
    pub fn with_bug(config: BreakerConfig, never_opens: bool) -> Self {
        Breaker {
            config,
            never_opens,
            state: BreakerState::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            recent_failures: 0,
            opened_at: 0,
            probes_in_flight: 0,
            probe_successes: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The configuration in force.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Replaces the configuration (e.g. on reload); a shrunk window drops its oldest results.
    pub fn set_config(&mut self, config: BreakerConfig) {
        self.config = config;
        self.trim_window();
    }

    /// May a request be sent now? Open moves to HalfOpen once the cooldown has passed;
    /// a request admitted while half-open counts as in flight until `record`.
    pub fn admit(&mut self, now: u64) -> (bool, Option<Transition>) {
        match self.state {
            BreakerState::Closed => (true, None),
            BreakerState::Open => {
                if !self.cooled_down(now) {
                    return (false, None);
                }
                let transition = self.move_to(BreakerState::HalfOpen, now);
                self.probes_in_flight = 1;
                (true, Some(transition))
            }
            BreakerState::HalfOpen => {
                if self.probes_in_flight < self.probe_limit() {
                    self.probes_in_flight += 1;
                    (true, None)
                } else {
                    (false, None)
                }
            }
        }
    }

    /// Whether `admit` would say yes now, without changing anything (for the
    /// balancer to skip open instances).
    pub fn would_admit(&self, now: u64) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => self.cooled_down(now),
            BreakerState::HalfOpen => self.probes_in_flight < self.probe_limit(),
        }
    }

    /// The outcome of an admitted request; returns the transition it caused, if any.
    /// Results arriving while Open (sent before it opened) change nothing.
    pub fn record(&mut self, ok: bool, now: u64) -> Option<Transition> {
        match self.state {
            BreakerState::Open => None,
            BreakerState::Closed => {
                self.count(ok);
                if self.never_opens || !self.tripped() {
                    return None;
                }
                Some(self.move_to(BreakerState::Open, now))
            }
            BreakerState::HalfOpen => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                if !ok {
                    return Some(self.move_to(BreakerState::Open, now));
                }
                self.probe_successes += 1;
                if self.probe_successes < self.config.close_after {
                    return None;
                }
                self.consecutive = 0;
                self.recent.clear();
                self.recent_failures = 0;
                Some(self.move_to(BreakerState::Closed, now))
            }
        }
    }

    /// An admitted request that was never sent (say the bulkhead refused it): frees its
    /// half-open probe slot without counting a result, so the breaker cannot stall.
    pub fn release(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Failures in a row since the last success (or since closing).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    fn cooled_down(&self, now: u64) -> bool {
        now.saturating_sub(self.opened_at) >= self.config.cooldown_ms
    }

    fn probe_limit(&self) -> u32 {
        self.config.half_open_probes.max(1)
    }

    fn window_len(&self) -> usize {
        self.config.window.max(1) as usize
    }

    /// Counts one result while closed.
    fn count(&mut self, ok: bool) {
        if ok {
            self.consecutive = 0;
        } else {
            self.consecutive = self.consecutive.saturating_add(1);
            self.recent_failures += 1;
        }
        self.recent.push_back(!ok);
        self.trim_window();
    }

    fn trim_window(&mut self) {
        while self.recent.len() > self.window_len() {
            if self.recent.pop_front() == Some(true) {
                self.recent_failures -= 1;
            }
        }
    }

    /// Whether the closed-state counts call for opening.
    fn tripped(&self) -> bool {
        if self.consecutive >= self.config.failures.max(1) {
            return true;
        }
        let seen = self.recent.len();
        seen >= self.window_len()
            && f64::from(self.recent_failures) / seen as f64 >= self.config.failure_rate
    }

    /// Enters `to`, clearing the half-open bookkeeping, and describes the change.
    fn move_to(&mut self, to: BreakerState, now: u64) -> Transition {
        let from = self.state;
        self.state = to;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        if to == BreakerState::Open {
            self.opened_at = now;
        }
        Transition {
            from,
            to,
            at_ms: now,
        }
    }
}

/// Exponential backoff with full jitter: the wait before retry `retry` (1 = first retry) is
/// uniform in `[0, min(cap_ms, base_ms * 2^(retry-1))]`, `unit` being a uniform draw in `[0, 1)`.
pub fn backoff_ms(base_ms: u64, cap_ms: u64, retry: u32, unit: f64) -> u64 {
    let bound = match 2u64.checked_pow(retry.saturating_sub(1)) {
        Some(factor) => base_ms.saturating_mul(factor),
        None if base_ms == 0 => 0,
        None => u64::MAX,
    }
    .min(cap_ms);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // `bound + 1` buckets make the top value as likely as the others; the float to
    // integer cast truncates and saturates, and the `min` covers `unit == 1`.
    let wait = ((bound as f64 + 1.0) * unit) as u64;
    wait.min(bound)
}

/// How requests are retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first try included.
    pub max_attempts: u32,
    /// Backoff before the first retry, at most.
    pub base_ms: u64,
    /// Longest backoff.
    pub cap_ms: u64,
    /// Retry tokens each request earns.
    pub budget_ratio: f64,
    /// Retry tokens earned per second regardless of traffic.
    pub min_per_sec: f64,
    /// Timeout of each attempt.
    pub per_try_timeout_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            base_ms: 10,
            cap_ms: 200,
            budget_ratio: 0.2,
            min_per_sec: 10.0,
            per_try_timeout_ms: 250,
        }
    }
}

impl RetryConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10).contains(&self.max_attempts) {
            return Err(format!(
                "retry.max_attempts must be between 1 and 10, got {}",
                self.max_attempts
            ));
        }
        at_least("retry.base_ms", self.base_ms, 1)?;
        at_least("retry.cap_ms", self.cap_ms, self.base_ms)?;
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            return Err(format!(
                "retry.budget_ratio must be between 0 and 1, got {}",
                self.budget_ratio
            ));
        }
        let rate_ok = self.min_per_sec.is_finite() && self.min_per_sec >= 0.0;
        if !rate_ok {
            return Err(format!(
                "retry.min_per_sec must be finite and at least 0, got {}",
                self.min_per_sec
            ));
        }
        at_least("retry.per_try_timeout_ms", self.per_try_timeout_ms, 1)
    }
}

/// Slack for float sums, so that five deposits of 0.2 buy a whole retry.
const TOKEN_EPSILON: f64 = 1e-9;

/// Retry budget (as Finagle's): a token bucket that keeps retries a bounded share of
/// traffic. The balance is capped at ten seconds' worth so an idle spell cannot bank a storm.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    cap: f64,
    balance: f64,
    last_ms: u64,
}

impl RetryBudget {
    /// A budget holding one second's worth of time-based tokens (`min_per_sec`).
    pub fn new(ratio: f64, min_per_sec: f64, now: u64) -> Self {
        let ratio = non_negative(ratio);
        let min_per_sec = non_negative(min_per_sec);
        let cap = (min_per_sec * 10.0).max(10.0);
        RetryBudget {
            ratio,
            min_per_sec,
            cap,
            balance: min_per_sec.min(cap),
            last_ms: now,
        }
    }

    /// One request arrived: earns `ratio` tokens (after the time-based ones).
    pub fn deposit(&mut self, now: u64) {
        self.accrue(now);
        self.balance = (self.balance + self.ratio).min(self.cap);
    }

    /// Takes one token for a retry if a whole one is there.
    pub fn try_withdraw(&mut self, now: u64) -> bool {
        self.accrue(now);
        if self.balance + TOKEN_EPSILON < 1.0 {
            return false;
        }
        self.balance = (self.balance - 1.0).max(0.0);
        true
    }

    /// Tokens available now.
    pub fn balance(&self) -> f64 {
        self.balance
    }

    /// Adds the tokens earned by time since the last update.
    fn accrue(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.last_ms);
        if elapsed > 0 {
            let earned = self.min_per_sec * elapsed as f64 / 1000.0;
            self.balance = (self.balance + earned).min(self.cap);
            self.last_ms = now;
        }
    }
}

/// `x` when finite and positive, else 0.
fn non_negative(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

/// Balancer policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each candidate in turn.
    RoundRobin,
    /// Fewest requests in flight, ties taken in turn.
    LeastOutstanding,
    /// Smooth weighted round robin.
    Weighted,
    /// A hash ring on the request key, so a key keeps its instance.
    ConsistentHash,
    /// The less busy of two random candidates.
    #[serde(alias = "p2c")]
    PowerOfTwo,
}

impl Policy {
    /// Every policy, in declaration order.
    pub const ALL: [Policy; 5] = [
        Policy::RoundRobin,
        Policy::LeastOutstanding,
        Policy::Weighted,
        Policy::ConsistentHash,
        Policy::PowerOfTwo,
    ];

    /// The name `from_str` accepts (and the CLI shows).
    pub fn name(&self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::LeastOutstanding => "least-outstanding",
            Policy::Weighted => "weighted",
            Policy::ConsistentHash => "consistent-hash",
            Policy::PowerOfTwo => "p2c",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "power-of-two" {
            return Ok(Policy::PowerOfTwo);
        }
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                let names = names.join(", ");
                format!("unknown balancer policy {s:?}; expected one of {names} (or power-of-two)")
            })
    }
}

/// One candidate as the balancer sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Instance id.
    pub id: String,
    /// Share for the weighted policy.
    pub weight: u32,
    /// Requests in flight to it.
    pub outstanding: u32,
}

/// Picks an instance per request under one policy, keeping the state some policies
/// carry between picks (keyed by id, so candidates may come and go).
#[derive(Clone, Debug)]
pub struct Balancer {
    policy: Policy,
    cursor: usize,
    /// Smooth weighted round robin's current weight per candidate id.
    current: BTreeMap<String, i64>,
}

impl Balancer {
    /// A balancer with fresh state.
    pub fn new(policy: Policy) -> Self {
        Balancer {
            policy,
            cursor: 0,
            current: BTreeMap::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Switches policy; state kept for the others does no harm.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Picks an index into `candidates` (sorted by id), None if there are none. `key`
    /// feeds ConsistentHash (round robin without one); `draw` feeds PowerOfTwo.
    pub fn pick(
        &mut self,
        candidates: &[Candidate],
        key: Option<&str>,
        draw: (u64, u64),
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let index = match (self.policy, key) {
            (Policy::RoundRobin, _) | (Policy::ConsistentHash, None) => {
                self.next_in_turn(candidates.len())
            }
            (Policy::LeastOutstanding, _) => self.least_outstanding(candidates),
            (Policy::Weighted, _) => self.smooth_weighted(candidates),
            (Policy::ConsistentHash, Some(key)) => ring_owner(candidates, key),
            (Policy::PowerOfTwo, _) => power_of_two(candidates, draw),
        };
        Some(index)
    }

    /// The cursor's position modulo `len`, advancing it.
    fn next_in_turn(&mut self, len: usize) -> usize {
        let index = self.cursor % len;
        self.cursor = self.cursor.wrapping_add(1);
        index
    }

    fn least_outstanding(&mut self, candidates: &[Candidate]) -> usize {
        let least = candidates.iter().map(|c| c.outstanding).min().unwrap_or(0);
        let tied: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.outstanding == least)
            .map(|(i, _)| i)
            .collect();
        tied[self.next_in_turn(tied.len())]
    }

    /// nginx's smooth weighted round robin: every pick adds each weight to its current
    /// value and takes the largest, which then gives back the total.
    fn smooth_weighted(&mut self, candidates: &[Candidate]) -> usize {
        self.current
            .retain(|id, _| candidates.iter().any(|c| c.id == *id));
        let total: i64 = candidates.iter().map(|c| i64::from(c.weight)).sum();
        if total == 0 {
            return self.next_in_turn(candidates.len());
        }
        let mut best = 0;
        let mut best_current = i64::MIN;
        for (i, c) in candidates.iter().enumerate() {
            let current = self.current.entry(c.id.clone()).or_default();
            *current += i64::from(c.weight);
            if *current > best_current {
                best = i;
                best_current = *current;
            }
        }
        if let Some(current) = self.current.get_mut(&candidates[best].id) {
            *current -= total;
        }
        best
    }
}

/// Virtual points per candidate on the consistent-hash ring.
const RING_POINTS: usize = 64;

/// The candidate owning the first ring point at or after the key's hash. Points that
/// collide are ordered by candidate index, which follows id order, so removing one
/// candidate cannot reorder the others.
fn ring_owner(candidates: &[Candidate], key: &str) -> usize {
    let mut ring: Vec<(u64, usize)> = Vec::with_capacity(candidates.len() * RING_POINTS);
    for (index, candidate) in candidates.iter().enumerate() {
        let id = &candidate.id;
        for point in 0..RING_POINTS {
            ring.push((stable_hash(format!("{id}#{point}").as_bytes()), index));
        }
    }
    ring.sort_unstable();
    let hash = stable_hash(key.as_bytes());
    let at = ring.partition_point(|&(point, _)| point < hash);
    ring[at % ring.len()].1
}

/// Power of two choices: two distinct candidates from the draws, the one with fewer
/// requests in flight wins (ties to the first).
fn power_of_two(candidates: &[Candidate], draw: (u64, u64)) -> usize {
    let len = candidates.len() as u64;
    if len < 2 {
        return 0;
    }
    let first = draw.0 % len;
    let mut second = draw.1 % (len - 1);
    if second >= first {
        second += 1;
    }
    let (first, second) = (first as usize, second as usize);
    if candidates[second].outstanding < candidates[first].outstanding {
        second
    } else {
        first
    }
}

/// FNV-1a 64 followed by the SplitMix64 finalizer: stable across runs, platforms and
/// Rust releases (unlike `DefaultHasher`), and well spread.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Bound on the normalised silence, so phi stays finite for any gap (and any `min_std_ms`).
const MAX_Y: f64 = 1e6;

/// Phi-accrual failure detector (Hayashibara et al.): suspicion grows with the silence
/// since the last heartbeat, scaled by how regular the heartbeats have been.
#[derive(Clone, Debug)]
pub struct PhiDetector {
    window: usize,
    min_std_ms: f64,
    intervals: VecDeque<f64>,
    last: Option<u64>,
}

impl PhiDetector {
    /// Keeps the last `window` inter-arrival times; the std-dev is floored at
    /// `min_std_ms` (1 ms when not positive) so a perfectly regular sender is not over-trusted.
    pub fn new(window: usize, min_std_ms: f64) -> Self {
        let min_std_ms = if min_std_ms.is_finite() && min_std_ms > 0.0 {
            min_std_ms
        } else {
            1.0
        };
        PhiDetector {
            window: window.max(1),
            min_std_ms,
            intervals: VecDeque::new(),
            last: None,
        }
    }

    /// A heartbeat arrived.
    pub fn heartbeat(&mut self, now: u64) {
        let last = match self.last {
            Some(last) => {
                self.intervals.push_back(now.saturating_sub(last) as f64);
                if self.intervals.len() > self.window {
                    self.intervals.pop_front();
                }
                last.max(now)
            }
            None => now,
        };
        self.last = Some(last);
    }

    /// `-log10(P(a heartbeat comes later than now - last))`, inter-arrivals modelled as
    /// normal; 0 before two heartbeats. Uses the logistic approximation of the normal
    /// CDF (Bowling et al., as Akka does), evaluated in log space so it stays finite.
    pub fn phi(&self, now: u64) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        if self.intervals.is_empty() {
            return 0.0;
        }
        let n = self.intervals.len() as f64;
        let mean = self.intervals.iter().sum::<f64>() / n;
        let variance = self
            .intervals
            .iter()
            .map(|x| (x - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = variance.sqrt().max(self.min_std_ms);
        let elapsed = now.saturating_sub(last) as f64;
        let y = ((elapsed - mean) / std).clamp(-MAX_Y, MAX_Y);
        // P(later) = 1 / (1 + e^t), so -ln P = ln(1 + e^t), increasing in t and in y.
        let t = y * (1.5976 + 0.070566 * y * y);
        let neg_ln_p = if t > 0.0 {
            t + (-t).exp().ln_1p()
        } else {
            t.exp().ln_1p()
        };
        neg_ln_p / std::f64::consts::LN_10
    }

    /// Inter-arrival times held (heartbeats seen minus one, up to `window`).
    pub fn samples(&self) -> usize {
        self.intervals.len()
    }
}

/// Active health checking of instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Probe interval.
    pub interval_ms: u64,
    /// Probe timeout.
    pub timeout_ms: u64,
    /// Consecutive failed probes that mark an instance down.
    pub failures: u32,
    /// Consecutive good probes that mark it up again.
    pub successes: u32,
    /// Phi above this marks it down.
    pub phi_threshold: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 100,
            timeout_ms: 100,
            failures: 2,
            successes: 2,
            phi_threshold: 8.0,
        }
    }
}

impl HealthConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        at_least("health.interval_ms", self.interval_ms, 10)?;
        at_least("health.timeout_ms", self.timeout_ms, 1)?;
        at_least("health.failures", self.failures, 1)?;
        at_least("health.successes", self.successes, 1)?;
        let phi_ok = self.phi_threshold.is_finite() && self.phi_threshold > 0.0;
        if !phi_ok {
            return Err(format!(
                "health.phi_threshold must be finite and above 0, got {}",
                self.phi_threshold
            ));
        }
        Ok(())
    }
}

/// Bulkhead: at most `max` requests in flight per instance; excess is refused at once,
/// so one slow instance cannot tie up every worker.
#[derive(Clone, Debug)]
pub struct Bulkhead {
    max: u32,
    in_flight: u32,
}

impl Bulkhead {
    /// An empty bulkhead.
    pub fn new(max: u32) -> Self {
        Bulkhead { max, in_flight: 0 }
    }

    /// Takes a slot if one is free.
    pub fn try_enter(&mut self) -> bool {
        if self.in_flight < self.max {
            self.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Gives a slot back.
    pub fn leave(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Slots taken.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Changes the limit; requests already in beyond a lower one drain normally.
    pub fn set_max(&mut self, max: u32) {
        self.max = max;
    }

    /// The limit.
    pub fn max(&self) -> u32 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::BreakerState::{Closed, HalfOpen, Open};
    use super::*;

    /// A change that makes a configuration invalid, and the field its error names.
    type Mutation<T> = (fn(&mut T), &'static str);

    /// A 64-bit LCG for deterministic draws (high bits only).
    struct Lcg(u64);

    impl Lcg {
        fn draw(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 17
        }
    }

    fn opens_after(failures: u32) -> BreakerConfig {
        BreakerConfig {
            failures,
            failure_rate: 1.0,
            window: 100,
            ..BreakerConfig::default()
        }
    }

    fn transition(from: BreakerState, to: BreakerState, at_ms: u64) -> Option<Transition> {
        Some(Transition { from, to, at_ms })
    }

    #[test]
    fn breaker_opens_at_the_nth_consecutive_failure() {
        let mut b = Breaker::new(opens_after(3));
        assert_eq!(b.record(false, 1), None);
        assert_eq!(b.record(false, 2), None);
        assert_eq!(b.consecutive_failures(), 2);
        assert_eq!(b.record(true, 3), None);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.record(false, 4), None);
        assert_eq!(b.record(false, 5), None);
        assert_eq!(b.state(), Closed);
        assert_eq!(b.record(false, 6), transition(Closed, Open, 6));
        assert_eq!(b.state(), Open);
    }

    #[test]
    fn breaker_opens_on_failure_rate_once_the_window_is_full() {
        let config = BreakerConfig {
            failures: 5,
            failure_rate: 0.5,
            window: 10,
            ..BreakerConfig::default()
        };
        let mut b = Breaker::new(config);
        let alternating = [true, false].into_iter().cycle();
        for (i, ok) in alternating.take(9).enumerate() {
            assert_eq!(b.record(ok, i as u64), None, "opened early at result {i}");
            assert!(b.consecutive_failures() <= 1);
        }
        assert_eq!(b.record(false, 9), transition(Closed, Open, 9));
    }

    #[test]
    fn breaker_cools_down_probes_and_closes_or_reopens() {
        let config = BreakerConfig {
            failures: 1,
            cooldown_ms: 100,
            half_open_probes: 2,
            close_after: 2,
            ..BreakerConfig::default()
        };
        let mut b = Breaker::new(config);
        assert_eq!(b.record(false, 1000), transition(Closed, Open, 1000));
        assert_eq!(b.admit(1050), (false, None));
        assert!(!b.would_admit(1099));
        assert!(b.would_admit(1100));
        assert_eq!(b.state(), Open);
        assert_eq!(b.admit(1100), (true, transition(Open, HalfOpen, 1100)));
        assert_eq!(b.admit(1101), (true, None));
        assert_eq!(b.admit(1102), (false, None));
        assert!(!b.would_admit(1102));
        assert_eq!(b.record(true, 1110), None);
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(b.admit(1111), (true, None));
        assert_eq!(b.record(true, 1120), transition(HalfOpen, Closed, 1120));
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.admit(1121), (true, None));

        assert_eq!(b.record(false, 1200), transition(Closed, Open, 1200));
        assert_eq!(b.admit(1300), (true, transition(Open, HalfOpen, 1300)));
        assert_eq!(b.record(false, 1310), transition(HalfOpen, Open, 1310));
        assert_eq!(b.admit(1409), (false, None));
        assert_eq!(b.admit(1410), (true, transition(Open, HalfOpen, 1410)));
        assert_eq!(b.admit(1411), (true, None));
        assert_eq!(b.admit(1412), (false, None));
        b.release();
        assert_eq!(b.admit(1413), (true, None));
        assert_eq!(b.state(), HalfOpen);
    }

    #[test]
    fn breaker_ignores_results_while_open() {
        let mut b = Breaker::new(opens_after(2));
        b.record(false, 0);
        assert_eq!(b.record(false, 1), transition(Closed, Open, 1));
        for (i, ok) in [true, false, true, true, false].into_iter().enumerate() {
            assert_eq!(b.record(ok, 10 + i as u64), None);
        }
        assert_eq!(b.state(), Open);
        assert_eq!(b.consecutive_failures(), 2);
        assert_eq!(b.admit(1000), (false, None));
        assert_eq!(b.admit(1001), (true, transition(Open, HalfOpen, 1001)));
    }

    #[test]
    fn never_opens_bug_stays_closed() {
        let mut b = Breaker::with_bug(BreakerConfig::default(), true);
        for now in 0..100 {
            assert_eq!(b.record(false, now), None);
        }
        assert_eq!(b.state(), Closed);
        assert_eq!(b.consecutive_failures(), 100);
        assert_eq!(b.admit(100), (true, None));
    }

    #[test]
    fn breaker_transitions_are_legal_and_chained() {
        let config = BreakerConfig {
            failures: 3,
            window: 8,
            cooldown_ms: 50,
            half_open_probes: 2,
            ..BreakerConfig::default()
        };
        let mut b = Breaker::new(config);
        let mut rng = Lcg(7);
        let mut state = b.state();
        let mut seen = 0;
        for now in 0..5000u64 {
            let (admitted, opened) = b.admit(now);
            let recorded = if admitted {
                b.record(rng.draw() % 10 >= 6, now)
            } else {
                None
            };
            for t in [opened, recorded].into_iter().flatten() {
                let legal = matches!(
                    (t.from, t.to),
                    (Closed, Open) | (Open, HalfOpen) | (HalfOpen, Open) | (HalfOpen, Closed)
                );
                assert!(legal, "{t:?}");
                assert_eq!(t.from, state);
                assert_eq!(t.at_ms, now);
                state = t.to;
                seen += 1;
            }
            assert_eq!(b.state(), state);
        }
        assert!(seen > 10, "only {seen} transitions");
    }

    #[test]
    fn backoff_stays_within_bounds_without_overflow() {
        for (base, cap) in [(10u64, 200u64), (1, u64::MAX), (1000, u64::MAX / 2), (7, 7)] {
            for retry in 1..=64u32 {
                let bound = (u128::from(base) << (retry - 1)).min(u128::from(cap));
                for step in 0..100u32 {
                    let wait = backoff_ms(base, cap, retry, f64::from(step) / 100.0);
                    assert!(u128::from(wait) <= bound, "{base} {cap} {retry} {step}");
                }
            }
        }
        assert!(backoff_ms(10, 200, u32::MAX, 0.999) <= 200);
        assert_eq!(backoff_ms(10, 200, 1, 0.0), 0);
        assert_eq!(backoff_ms(10, 200, 3, 0.9999), 40);
        assert_eq!(backoff_ms(10, 200, 10, 0.9999), 200);
    }

    #[test]
    fn backoff_jitter_is_full() {
        let bound = 160.0;
        let waits: Vec<u64> = (0..1000u32)
            .map(|i| backoff_ms(10, 10_000, 5, f64::from(i) / 1000.0))
            .collect();
        let mean = waits.iter().sum::<u64>() as f64 / waits.len() as f64;
        assert!(
            (mean - bound / 2.0).abs() <= bound / 2.0 * 0.05,
            "mean {mean}"
        );
        assert_eq!(waits.iter().min(), Some(&0));
        assert_eq!(waits.iter().max(), Some(&160));
    }

    #[test]
    fn budget_earns_ratio_tokens_per_request() {
        let mut budget = RetryBudget::new(0.2, 0.0, 0);
        assert!(budget.balance().abs() < 1e-12);
        let mut granted = 0;
        for now in 0..100 {
            budget.deposit(now);
            if budget.try_withdraw(now) {
                granted += 1;
            }
        }
        assert_eq!(granted, 20);
    }

    #[test]
    fn budget_accrues_with_time() {
        let mut budget = RetryBudget::new(0.2, 10.0, 0);
        let granted = (0..1000).filter(|_| budget.try_withdraw(1000)).count();
        assert_eq!(granted, 20, "10 at the start and 10 earned in one second");
    }

    #[test]
    fn budget_is_capped() {
        let mut budget = RetryBudget::new(0.0, 10.0, 0);
        budget.deposit(3_600_000);
        assert!(budget.balance() <= 100.0 + 1e-9);
        let granted = (0..1000).filter(|_| budget.try_withdraw(3_600_000)).count();
        assert_eq!(granted, 100);

        let mut burst = RetryBudget::new(0.2, 0.0, 0);
        for _ in 0..100 {
            burst.deposit(0);
        }
        assert!(burst.balance() <= 10.0 + 1e-9);
    }

    fn candidates(ids: &[&str]) -> Vec<Candidate> {
        ids.iter()
            .map(|id| Candidate {
                id: (*id).to_string(),
                weight: 1,
                outstanding: 0,
            })
            .collect()
    }

    fn counts(lb: &mut Balancer, cs: &[Candidate], picks: usize) -> Vec<u32> {
        let mut counts = vec![0; cs.len()];
        for _ in 0..picks {
            counts[lb.pick(cs, None, (0, 0)).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn balancers_return_none_without_candidates() {
        for policy in Policy::ALL {
            assert_eq!(Balancer::new(policy).pick(&[], Some("k"), (1, 2)), None);
        }
    }

    #[test]
    fn round_robin_is_exactly_even() {
        let cs = candidates(&["a", "b", "c"]);
        let mut lb = Balancer::new(Policy::RoundRobin);
        assert_eq!(counts(&mut lb, &cs, 300), [100, 100, 100]);
        let mut keyless = Balancer::new(Policy::ConsistentHash);
        assert_eq!(counts(&mut keyless, &cs, 300), [100, 100, 100]);
    }

    #[test]
    fn weighted_is_proportional_and_smooth() {
        let mut cs = candidates(&["a", "b", "c"]);
        for (c, w) in cs.iter_mut().zip([1, 2, 3]) {
            c.weight = w;
        }
        let mut lb = Balancer::new(Policy::Weighted);
        let picks: Vec<usize> = (0..600)
            .map(|_| lb.pick(&cs, None, (0, 0)).unwrap())
            .collect();
        for window in picks.windows(6) {
            let mut in_window = [0; 3];
            for &p in window {
                in_window[p] += 1;
            }
            assert_eq!(in_window, [1, 2, 3], "{window:?}");
        }
        let mut totals = [0; 3];
        for &p in &picks {
            totals[p] += 1;
        }
        assert_eq!(totals, [100, 200, 300]);

        for (c, w) in cs.iter_mut().zip([5, 1, 1]) {
            c.weight = w;
        }
        let mut lb = Balancer::new(Policy::Weighted);
        let seq: Vec<usize> = (0..7)
            .map(|_| lb.pick(&cs, None, (0, 0)).unwrap())
            .collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_outstanding_picks_the_minimum_and_shares_ties() {
        let mut cs = candidates(&["a", "b", "c", "d"]);
        for (c, o) in cs.iter_mut().zip([3, 1, 4, 1]) {
            c.outstanding = o;
        }
        let mut lb = Balancer::new(Policy::LeastOutstanding);
        assert_eq!(counts(&mut lb, &cs, 100), [0, 50, 0, 50]);
    }

    #[test]
    fn p2c_never_picks_the_worst_and_compares_distinct_candidates() {
        let mut cs = candidates(&["a", "b", "c"]);
        for (c, o) in cs.iter_mut().zip([9, 2, 5]) {
            c.outstanding = o;
        }
        let mut lb = Balancer::new(Policy::PowerOfTwo);
        for x in 0..20 {
            for y in 0..20 {
                assert_ne!(lb.pick(&cs, None, (x, y)), Some(0), "draws {x} {y}");
            }
        }
        let pair = &cs[1..];
        for x in 0..10 {
            for y in 0..10 {
                assert_eq!(lb.pick(pair, None, (x, y)), Some(0), "draws {x} {y}");
            }
        }
        assert_eq!(lb.pick(&cs[..1], None, (5, 9)), Some(0));
    }

    #[test]
    fn p2c_spreads_equal_candidates_evenly() {
        let cs = candidates(&["a", "b", "c"]);
        let mut lb = Balancer::new(Policy::PowerOfTwo);
        let mut rng = Lcg(42);
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            let draw = (rng.draw(), rng.draw());
            counts[lb.pick(&cs, None, draw).unwrap()] += 1;
        }
        for n in counts {
            assert!((800..=1200).contains(&n), "{counts:?}");
        }
    }

    #[test]
    fn consistent_hash_is_stable_even_and_moves_only_removed_keys() {
        let cs = candidates(&["a", "b", "c"]);
        let mut lb = Balancer::new(Policy::ConsistentHash);
        let keys: Vec<String> = (0..3000).map(|i| format!("key-{i}")).collect();
        let mut owner_of = |cs: &[Candidate], key: &str| -> String {
            cs[lb.pick(cs, Some(key), (3, 4)).unwrap()].id.clone()
        };
        let before: Vec<String> = keys.iter().map(|k| owner_of(&cs, k)).collect();
        for (key, owner) in keys.iter().zip(&before) {
            assert_eq!(&owner_of(&cs, key), owner);
        }
        for c in &cs {
            let (id, n) = (&c.id, before.iter().filter(|o| **o == c.id).count());
            assert!((750..=1250).contains(&n), "{id} owns {n}");
        }
        let fewer: Vec<Candidate> = cs.iter().filter(|c| c.id != "b").cloned().collect();
        for (key, owner) in keys.iter().zip(&before) {
            let now_owner = owner_of(&fewer, key);
            if owner == "b" {
                assert_ne!(now_owner, "b");
            } else {
                assert_eq!(&now_owner, owner, "{key} moved");
            }
        }
    }

    #[test]
    fn phi_rises_with_silence() {
        let mut d = PhiDetector::new(100, 10.0);
        assert!(d.phi(5000).abs() < 1e-12);
        d.heartbeat(0);
        assert!(d.phi(5000).abs() < 1e-12);
        for i in 1..=20 {
            d.heartbeat(i * 100);
        }
        assert_eq!(d.samples(), 20);
        let last = 2000;
        assert!(d.phi(last + 100) < 1.0);
        assert!(d.phi(last + 300) > d.phi(last + 150));
        assert!(d.phi(last + 1000) > 8.0);
        let mut previous = 0.0;
        for now in (last..last + 5000).step_by(7) {
            let phi = d.phi(now);
            assert!(phi.is_finite() && phi >= previous, "phi({now}) = {phi}");
            previous = phi;
        }
        assert!(d.phi(u64::MAX).is_finite());
        assert!(d.phi(u64::MAX) >= previous);
    }

    #[test]
    fn phi_tolerates_jitter_and_keeps_a_window() {
        let mut d = PhiDetector::new(10, 1.0);
        let mut now = 0;
        for gap in [80, 120].into_iter().cycle().take(30) {
            now += gap;
            d.heartbeat(now);
        }
        assert_eq!(d.samples(), 10);
        assert!(d.phi(now + 100) < 1.0);
        assert!(d.phi(now + 1000) > 8.0);
    }

    fn assert_names(result: Result<(), String>, field: &str) {
        match result {
            Ok(()) => panic!("{field}: accepted"),
            Err(e) => assert!(e.contains(field), "{field}: {e}"),
        }
    }

    #[test]
    fn config_defaults_validate_and_bad_fields_are_named() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        assert_eq!(RetryConfig::default().validate(), Ok(()));
        assert_eq!(HealthConfig::default().validate(), Ok(()));

        let bad_breakers: [Mutation<BreakerConfig>; 7] = [
            (|c| c.failures = 0, "breaker.failures"),
            (|c| c.failure_rate = 0.0, "breaker.failure_rate"),
            (|c| c.failure_rate = 1.5, "breaker.failure_rate"),
            (|c| c.failure_rate = f64::NAN, "breaker.failure_rate"),
            (|c| c.window = 0, "breaker.window"),
            (|c| c.half_open_probes = 0, "breaker.half_open_probes"),
            (|c| c.close_after = 0, "breaker.close_after"),
        ];
        for (spoil, field) in bad_breakers {
            let mut config = BreakerConfig::default();
            spoil(&mut config);
            assert_names(config.validate(), field);
        }

        let bad_retries: [Mutation<RetryConfig>; 9] = [
            (|c| c.max_attempts = 0, "retry.max_attempts"),
            (|c| c.max_attempts = 11, "retry.max_attempts"),
            (|c| c.base_ms = 0, "retry.base_ms"),
            (|c| c.cap_ms = 5, "retry.cap_ms"),
            (|c| c.budget_ratio = -0.1, "retry.budget_ratio"),
            (|c| c.budget_ratio = f64::NAN, "retry.budget_ratio"),
            (|c| c.min_per_sec = -1.0, "retry.min_per_sec"),
            (|c| c.min_per_sec = f64::INFINITY, "retry.min_per_sec"),
            (|c| c.per_try_timeout_ms = 0, "retry.per_try_timeout_ms"),
        ];
        for (spoil, field) in bad_retries {
            let mut config = RetryConfig::default();
            spoil(&mut config);
            assert_names(config.validate(), field);
        }

        let bad_health: [Mutation<HealthConfig>; 6] = [
            (|c| c.interval_ms = 9, "health.interval_ms"),
            (|c| c.timeout_ms = 0, "health.timeout_ms"),
            (|c| c.failures = 0, "health.failures"),
            (|c| c.successes = 0, "health.successes"),
            (|c| c.phi_threshold = 0.0, "health.phi_threshold"),
            (|c| c.phi_threshold = f64::INFINITY, "health.phi_threshold"),
        ];
        for (spoil, field) in bad_health {
            let mut config = HealthConfig::default();
            spoil(&mut config);
            assert_names(config.validate(), field);
        }
    }

    #[test]
    fn configs_reject_unknown_fields_and_default_missing_ones() {
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"bogus":1}"#).is_err());
        assert!(serde_json::from_str::<RetryConfig>(r#"{"bogus":1}"#).is_err());
        assert!(serde_json::from_str::<HealthConfig>(r#"{"bogus":1}"#).is_err());
        let b: BreakerConfig = serde_json::from_str(r#"{"failures":3}"#).unwrap();
        assert_eq!(
            b,
            BreakerConfig {
                failures: 3,
                ..BreakerConfig::default()
            }
        );
        let r: RetryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(r, RetryConfig::default());
        let h: HealthConfig = serde_json::from_str(r#"{"phi_threshold":5.0}"#).unwrap();
        assert_eq!(
            h,
            HealthConfig {
                phi_threshold: 5.0,
                ..HealthConfig::default()
            }
        );
        assert_eq!(serde_json::to_string(&HalfOpen).unwrap(), r#""half-open""#);
    }

    #[test]
    fn policy_names_round_trip() {
        for policy in Policy::ALL {
            assert_eq!(policy.name().parse::<Policy>(), Ok(policy));
            assert_eq!(policy.to_string(), policy.name());
        }
        assert_eq!("power-of-two".parse::<Policy>(), Ok(Policy::PowerOfTwo));
        let err = "random".parse::<Policy>().unwrap_err();
        assert!(err.contains("round-robin") && err.contains("p2c"), "{err}");
        let p2c: Policy = serde_json::from_str(r#""p2c""#).unwrap();
        assert_eq!(p2c, Policy::PowerOfTwo);
        let lo = serde_json::to_string(&Policy::LeastOutstanding).unwrap();
        assert_eq!(lo, r#""least-outstanding""#);
    }

    #[test]
    fn bulkhead_refuses_beyond_max() {
        let mut bh = Bulkhead::new(2);
        assert!(bh.try_enter());
        assert!(bh.try_enter());
        assert!(!bh.try_enter());
        assert_eq!(bh.in_flight(), 2);
        bh.leave();
        assert!(bh.try_enter());
        assert!(!bh.try_enter());
        bh.set_max(3);
        assert_eq!(bh.max(), 3);
        assert!(bh.try_enter());
        for _ in 0..10 {
            bh.leave();
        }
        assert_eq!(bh.in_flight(), 0);
    }
}
