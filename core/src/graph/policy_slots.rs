//! Task policy configuration slots: the ONE module where the graph and the interpreter meet
//! the policy, cache and usage types.
//!
//! While `crate::policy` and `crate::cache` were being written in parallel, the graph needed
//! their types to define a task's configuration. The minimal stand-ins below mirror the
//! announced APIs (`ErrorClass`, `Recovery`, `RecoveryTable`, `RetryPolicy`, `Backoff`,
//! `RetryState::on_failure -> Decision`, `Rng`, `CircuitBreaker::try_acquire / record`,
//! `Usage`, `UsageBudget::reserve / reconcile`, `CacheKey`, a fixed-capacity cache), so the
//! lead can replace each one with a `pub use crate::policy::...` at merge without reshaping
//! the graph or the interpreter. Everything else in `graph`, `context` and `interp` imports
//! these names from here only.
//!
//! SEAM(lead): replace the stand-ins with the real types; the interpreter calls exactly the
//! methods used here (see `interp/exec.rs`, marked `SEAM(breaker)`, `SEAM(cache)`,
//! `SEAM(usage)`, `SEAM(retry)`).

use crate::sync::{AtomicU32, Ordering};

/// What kind of failure a step met; the recovery table maps each class to a [`Recovery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A failure that may pass if tried again (a busy resource, a dropped connection).
    Transient,
    /// A failure that will not pass by trying again.
    Permanent,
    /// A validator rejected the output.
    Validation,
    /// A deadline passed.
    Timeout,
    /// The step panicked (caught by the runtime).
    Panic,
    /// The step's circuit breaker is open.
    CircuitOpen,
    /// The run's usage budget denied the step; always aborts the run.
    Usage,
    /// The run was cancelled; always aborts the run.
    Cancelled,
}

impl ErrorClass {
    /// Number of classes (the recovery table's length).
    pub const COUNT: usize = 8;

    /// Dense index of the class, `0 .. COUNT`.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether this class always aborts the run, whatever the recovery table says.
    #[inline]
    pub const fn always_aborts(self) -> bool {
        matches!(self, ErrorClass::Usage | ErrorClass::Cancelled)
    }
}

/// What to do about a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Try again (while attempts remain; then fall back if there is a fallback, else fail).
    Retry,
    /// Run the fallback step (fail when there is none).
    Fallback,
    /// Succeed with the task's default output.
    Skip,
    /// Fail the step.
    Fail,
}

/// A per-step map from [`ErrorClass`] to [`Recovery`]. Usage and cancelled always abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryTable {
    by_class: [Recovery; ErrorClass::COUNT],
}

impl Default for RecoveryTable {
    /// Transient and timeout retry; validation, permanent, panic and circuit-open fall back.
    fn default() -> Self {
        let mut by_class = [Recovery::Fallback; ErrorClass::COUNT];
        by_class[ErrorClass::Transient.index()] = Recovery::Retry;
        by_class[ErrorClass::Timeout.index()] = Recovery::Retry;
        by_class[ErrorClass::Usage.index()] = Recovery::Fail;
        by_class[ErrorClass::Cancelled.index()] = Recovery::Fail;
        Self { by_class }
    }
}

impl RecoveryTable {
    /// Returns the table with `class` mapped to `recovery`.
    #[must_use]
    pub const fn with(mut self, class: ErrorClass, recovery: Recovery) -> Self {
        self.by_class[class.index()] = recovery;
        self
    }

    /// The recovery for `class`.
    #[inline]
    pub const fn get(&self, class: ErrorClass) -> Recovery {
        self.by_class[class.index()]
    }

    /// Whether any class that can reach the table maps to `recovery`.
    pub fn uses(&self, recovery: Recovery) -> bool {
        self.by_class.iter().enumerate().any(|(i, r)| {
            *r == recovery && i != ErrorClass::Usage.index() && i != ErrorClass::Cancelled.index()
        })
    }
}

/// Delay between attempts, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// No wait.
    None,
    /// The same wait every time.
    Constant(u64),
    /// `base * 2^(attempt-1)`, capped at `max`.
    Exponential {
        /// First delay.
        base: u64,
        /// Largest delay.
        max: u64,
    },
}

impl Backoff {
    /// Delay after failed attempt number `attempt` (1-based).
    pub fn delay_ticks(&self, attempt: u32, _rng: &mut Rng) -> u64 {
        match *self {
            Backoff::None => 0,
            Backoff::Constant(d) => d,
            Backoff::Exponential { base, max } => {
                let shift = attempt.saturating_sub(1).min(63);
                base.saturating_mul(1u64 << shift).min(max)
            }
        }
    }
}

/// Bounded retries: at most `max_attempts` attempts (so `max_attempts - 1` retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// One attempt, no retries.
    fn default() -> Self {
        Self {
            max_attempts: 1,
            backoff: Backoff::None,
        }
    }
}

/// The decision after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this many ticks.
    RetryAfter(u64),
    /// Run the fallback (fail if there is none).
    Fallback,
    /// Use the default output.
    Skip,
    /// Fail the step.
    Fail,
    /// Abort the run.
    Abort,
}

/// Retry state of one task execution.
#[derive(Clone, Copy, Debug)]
pub struct RetryState {
    policy: RetryPolicy,
    attempts: u32,
}

impl RetryState {
    /// A fresh state for `policy`.
    pub const fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            attempts: 0,
        }
    }

    /// Attempts made so far.
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records a failed attempt of `class` and decides what comes next.
    pub fn on_failure(
        &mut self,
        class: ErrorClass,
        table: &RecoveryTable,
        rng: &mut Rng,
    ) -> Decision {
        self.attempts += 1;
        if class.always_aborts() {
            return Decision::Abort;
        }
        match table.get(class) {
            Recovery::Retry if self.attempts < self.policy.max_attempts => {
                Decision::RetryAfter(self.policy.backoff.delay_ticks(self.attempts, rng))
            }
            Recovery::Retry | Recovery::Fallback => Decision::Fallback,
            Recovery::Skip => Decision::Skip,
            Recovery::Fail => Decision::Fail,
        }
    }
}

/// A seeded pseudo-random generator (splitmix64): jitter without a clock or the OS.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Usage of a step or a run: cost units and tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cost units.
    pub cost: u64,
    /// Tokens.
    pub tokens: u64,
}

impl Usage {
    /// Zero usage.
    pub const ZERO: Usage = Usage { cost: 0, tokens: 0 };

    /// Component-wise saturating sum.
    #[inline]
    #[must_use]
    pub const fn saturating_add(self, other: Usage) -> Usage {
        Usage {
            cost: self.cost.saturating_add(other.cost),
            tokens: self.tokens.saturating_add(other.tokens),
        }
    }

    /// Whether both components are zero.
    #[inline]
    pub const fn is_zero(&self) -> bool {
        (self.cost | self.tokens) == 0
    }
}

/// A run's usage budget: a limit, what was used and what is reserved.
#[derive(Clone, Copy, Debug)]
pub struct UsageBudget {
    limit: Usage,
    used: Usage,
    reserved: Usage,
}

/// A reservation from [`UsageBudget::reserve`], settled by [`UsageBudget::reconcile`].
#[derive(Debug)]
#[must_use]
pub struct Reservation(Usage);

/// A denied reservation: what was asked and what was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The estimate asked for.
    pub requested: Usage,
    /// What the budget had left.
    pub remaining: Usage,
}

impl UsageBudget {
    /// A budget of `limit`.
    pub const fn new(limit: Usage) -> Self {
        Self {
            limit,
            used: Usage::ZERO,
            reserved: Usage::ZERO,
        }
    }

    /// A budget that never denies.
    pub const fn unlimited() -> Self {
        Self::new(Usage {
            cost: u64::MAX,
            tokens: u64::MAX,
        })
    }

    fn remaining(&self) -> Usage {
        let taken = self.used.saturating_add(self.reserved);
        Usage {
            cost: self.limit.cost.saturating_sub(taken.cost),
            tokens: self.limit.tokens.saturating_sub(taken.tokens),
        }
    }

    /// Reserves `estimate`, or says what was left.
    pub fn reserve(&mut self, estimate: Usage) -> Result<Reservation, Denied> {
        let remaining = self.remaining();
        if estimate.cost > remaining.cost || estimate.tokens > remaining.tokens {
            return Err(Denied {
                requested: estimate,
                remaining,
            });
        }
        self.reserved = self.reserved.saturating_add(estimate);
        Ok(Reservation(estimate))
    }

    /// Releases `reservation` and books the `actual` usage.
    pub fn reconcile(&mut self, reservation: Reservation, actual: Usage) {
        self.reserved.cost -= reservation.0.cost;
        self.reserved.tokens -= reservation.0.tokens;
        self.used = self.used.saturating_add(actual);
    }

    /// Books usage that had no reservation (steps without an estimate).
    pub fn book(&mut self, actual: Usage) {
        self.used = self.used.saturating_add(actual);
    }
}

/// Permission to call a step through its breaker.
#[derive(Debug)]
#[must_use]
pub struct Permit(());

/// The breaker is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

/// Outcome reported to a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The call succeeded.
    Success,
    /// The call failed.
    Failure,
}

/// A minimal shareable breaker: opens after `threshold` consecutive failures for
/// `open_ticks`, then lets calls through again. SEAM(lead): replace with the real
/// `policy::CircuitBreaker` (half-open probes, failure rate, slow calls).
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    open_ticks: u32,
    /// Consecutive failures; written by `record`, any ordering (a heuristic, not a lock).
    failures: AtomicU32,
    /// Tick (truncated to 32 bits) until which the breaker is open; 0 when closed.
    open_until: AtomicU32,
}

impl CircuitBreaker {
    /// A breaker opening after `threshold` consecutive failures for `open_ticks` ticks.
    pub fn new(threshold: u32, open_ticks: u32) -> Self {
        assert!(threshold > 0, "breaker threshold must be at least 1");
        Self {
            threshold,
            open_ticks,
            failures: AtomicU32::new(0),
            open_until: AtomicU32::new(0),
        }
    }

    /// A permit when closed, [`Rejected`] when open.
    #[inline]
    pub fn try_acquire(&self, now: u64) -> Result<Permit, Rejected> {
        let until = self.open_until.load(Ordering::Acquire);
        if until != 0 && (now as u32) < until {
            return Err(Rejected);
        }
        Ok(Permit(()))
    }

    /// Gives a permit back without an outcome (the call was never made).
    pub fn release(&self, _permit: Permit) {}

    /// Learns the outcome of a permitted call.
    #[inline]
    pub fn record(&self, _permit: Permit, outcome: CallOutcome, _latency_ticks: u64, now: u64) {
        match outcome {
            CallOutcome::Success => {
                self.failures.store(0, Ordering::Relaxed);
                self.open_until.store(0, Ordering::Release);
            }
            CallOutcome::Failure => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.threshold {
                    let until = (now as u32).saturating_add(self.open_ticks).max(1);
                    self.open_until.store(until, Ordering::Release);
                }
            }
        }
    }
}

/// A 256-bit cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

/// Canonical byte encoding of a cacheable step's input. SEAM(lead): `cache::CanonicalEncode`.
pub trait CanonicalEncode {
    /// Feeds the canonical bytes of `self` to `out`.
    fn encode(&self, out: &mut dyn FnMut(&[u8]));
}

macro_rules! encode_int {
    ($($t:ty),*) => {$(
        impl CanonicalEncode for $t {
            fn encode(&self, out: &mut dyn FnMut(&[u8])) {
                out(&self.to_le_bytes());
            }
        }
    )*};
}
encode_int!(u8, u16, u32, u64, i8, i16, i32, i64);

/// Computes a task's cache key: blake3 over the step fingerprint and the input's encoding.
pub fn cache_key<P: CanonicalEncode>(fingerprint: u64, input: &P) -> CacheKey {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&fingerprint.to_le_bytes());
    input.encode(&mut |bytes| {
        hasher.update(bytes);
    });
    CacheKey(*hasher.finalize().as_bytes())
}

/// A fixed-capacity cache of step outputs (first-in-first-out eviction). SEAM(lead):
/// `cache::FixedCache`.
#[derive(Debug)]
pub struct StepCache<V> {
    capacity: usize,
    next: usize,
    entries: alloc::vec::Vec<(u32, CacheKey, V)>,
}

impl<V> StepCache<V> {
    /// A cache of at most `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next: 0,
            entries: alloc::vec::Vec::with_capacity(capacity),
        }
    }

    /// The stored output of `task` for `key`.
    pub fn get(&mut self, task: u32, key: &CacheKey, _now: u64) -> Option<&V> {
        self.entries
            .iter()
            .find(|(t, k, _)| *t == task && k == key)
            .map(|(_, _, v)| v)
    }

    /// Stores `value`, evicting the oldest entry when full.
    pub fn insert(&mut self, task: u32, key: CacheKey, value: V, _now: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() < self.capacity {
            self.entries.push((task, key, value));
        } else {
            self.entries[self.next] = (task, key, value);
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
