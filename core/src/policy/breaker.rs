//! A circuit breaker shared by threads and runs: a lock-free state machine over a handful of
//! atomics, driven by the caller's ticks.
//!
//! The rules follow the common breaker (Nygard's "Release It!", as in resilience4j and Polly):
//!
//! - **Closed**: calls pass. The breaker opens when `consecutive_failures_to_open` failures
//!   come in a row, or when, with at least `window_calls_min` calls in the window of the last
//!   `window_calls` calls (a count-based window), the failures reach
//!   `failure_rate_percent_to_open` percent of them. A call whose latency is at least
//!   `slow_call_ticks` counts as a failure even if it succeeded.
//! - **Open**: calls are rejected until `open_ticks` have passed since it opened (saturating:
//!   a deadline past `u64::MAX` is `u64::MAX`). The first acquire at or after the deadline moves
//!   it to half-open and takes the first probe.
//! - **HalfOpen**: at most `half_open_probes_max` probes are let through in the period (a
//!   probe given back with [`Breaker::release`] can be reissued). `half_open_successes_to_close`
//!   successes close it; a failure opens it again.
//!
//! Only the transitions of [`transition`] happen; the code asks that function on every one.
//!
//! # Atomic layout (why it works without `AtomicU64`)
//!
//! `state` (an `AtomicUsize`) holds the whole state machine in one word, so each transition is
//! one compare-and-swap and exactly one thread wins it (and counts it):
//!
//! ```text
//! bit  0..2   state: 0 Closed, 1 Open, 2 HalfOpen
//! bit  2      PENDING (Open only): the opener is still writing the deadline
//! bits 3..10  probes issued in this half-open period, 0 ..= PROBES_MAX
//! bits 10..17 probe successes in this half-open period, 0 ..= PROBES_MAX
//! bits 17..   period: +1 on every transition (wrapping; 15 bits on 32-bit targets)
//! ```
//!
//! A [`Permit`] remembers the period it was issued in; an outcome recorded after the period
//! ended is ignored (its period number is stale), so a late outcome can never trigger a
//! transition. (On 32-bit targets the period number wraps after 32768 transitions: a permit
//! held that long could be taken for a current one.)
//!
//! The open deadline is a `u64` kept as two `AtomicU32` halves, which only the thread that won
//! the transition to Open writes, while the word says `Open | PENDING`; it then publishes
//! `Open` with a release store. A reader loads the word (acquire), reads the halves and loads
//! the word again: if it changed, the halves may be torn and the reader starts over (a
//! seqlock whose sequence is the state word; the compare-and-swap that moves Open to HalfOpen
//! would fail on a changed word anyway, the second load makes the rejection path consistent
//! too). While the word is pending, acquires are rejected:
//! the breaker has just opened, so that is the right answer (it lasts as long as the opener is
//! pre-empted, at worst).
//!
//! The closed-state statistics live beside the word: a consecutive-failure counter, the
//! window's failure bits (one per slot, `WINDOW_CALLS_MAX` slots) and its position (cursor and
//! number of calls seen, packed in one `AtomicU32`). The opener clears them while the word is
//! pending. Each is updated atomically but not together with the others, so under races:
//! - of failures racing in one closed period, the last to evaluate the rules sees every one
//!   of the others' window writes (it reads the position with an acquire/release
//!   read-modify-write after its own writes, as each of them did), so failures that together
//!   meet a rule cannot all miss the opening; the streak is a single counter, exact;
//! - a success racing with them may or may not be seen by that evaluation;
//! - an outcome whose recording races with a transition can land in the next closed period's
//!   statistics;
//! - with more than `window_calls` records in flight, two can write the same slot in either
//!   order.
//!
//! Single-threaded use gives exactly the rules above (the fuzz target checks that against a
//! plain sequential model). The failure count is the popcount of the window bits, never a
//! separate counter, so a race cannot make it drift.
//!
//! **Hot path**: on a closed breaker whose window is full and holds no failures, an acquire is
//! one load and a success record is a few loads and no write, so threads sharing a healthy
//! breaker never contend for its cache lines.
//!
//! # Progress
//!
//! Every method is lock-free: a compare-and-swap loop retries only when another thread's
//! operation succeeded. [`Breaker::try_acquire`] can reject while an opener is pre-empted
//! between its two steps (see above).

use core::fmt;

use crate::sync::{AtomicU32, AtomicUsize, Ordering};

/// A breaker state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A bounded number of probe calls pass; their outcomes decide.
    HalfOpen,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

    /// The state's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }

    const fn code(self) -> usize {
        self as usize
    }

    #[inline(always)]
    const fn from_code(code: usize) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            _ => panic!("breaker state word holds an unknown state"),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A legal state change; only [`transition`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transition {
    from: State,
    to: State,
}

impl Transition {
    /// The number of legal transitions.
    pub const COUNT: usize = 4;

    /// The state left.
    pub const fn from(self) -> State {
        self.from
    }

    /// The state entered.
    pub const fn to(self) -> State {
        self.to
    }

    /// The transition's index in `0 .. Transition::COUNT`: closed->open, open->half-open,
    /// half-open->closed, half-open->open.
    pub const fn index(self) -> usize {
        match (self.from, self.to) {
            (State::Closed, State::Open) => 0,
            (State::Open, State::HalfOpen) => 1,
            (State::HalfOpen, State::Closed) => 2,
            (State::HalfOpen, State::Open) => 3,
            _ => panic!("Transition holds an illegal pair"),
        }
    }
}

/// A state change that the breaker never makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The state it would leave.
    pub from: State,
    /// The state it would enter.
    pub to: State,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal breaker transition {} -> {}", self.from, self.to)
    }
}

impl core::error::Error for IllegalTransition {}

/// The legal-transition table: closed->open, open->half-open, half-open->closed and
/// half-open->open; everything else (self-loops included) is illegal.
///
/// # Examples
///
/// ```
/// use flujo_core::policy::breaker::{transition, State};
///
/// assert!(transition(State::Closed, State::Open).is_ok());
/// assert!(transition(State::Open, State::Closed).is_err());
/// ```
pub const fn transition(from: State, to: State) -> Result<Transition, IllegalTransition> {
    match (from, to) {
        (State::Closed, State::Open)
        | (State::Open, State::HalfOpen)
        | (State::HalfOpen, State::Closed)
        | (State::HalfOpen, State::Open) => Ok(Transition { from, to }),
        _ => Err(IllegalTransition { from, to }),
    }
}

/// The most calls a failure-rate window holds.
pub const WINDOW_CALLS_MAX: u32 = 256;
/// The most probes a half-open period allows.
pub const PROBES_MAX: u32 = 64;

/// A breaker's rules. Counts of 0 switch their trigger off where the field says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerConfig {
    /// Opens after this many failures in a row (0: this trigger is off).
    pub consecutive_failures_to_open: u32,
    /// The failure-rate window: the last this many calls, `1 ..= WINDOW_CALLS_MAX`.
    pub window_calls: u32,
    /// Opens when failures are at least this percent of the calls in the window,
    /// `0 ..= 100` (0: this trigger is off).
    pub failure_rate_percent_to_open: u32,
    /// The rate trigger waits for this many calls in the window, `1 ..= window_calls`.
    pub window_calls_min: u32,
    /// A call whose latency is at least this many ticks is a failure (0: off).
    pub slow_call_ticks: u64,
    /// How long the breaker stays open.
    pub open_ticks: u64,
    /// Probes allowed per half-open period, `1 ..= PROBES_MAX`.
    pub half_open_probes_max: u32,
    /// Probe successes that close the breaker, `1 ..= half_open_probes_max`.
    pub half_open_successes_to_close: u32,
}

impl BreakerConfig {
    /// Opens after 5 failures in a row or at 50% failures over the last 100 calls (once 20
    /// were seen); no slow-call rule; open for 30 000 ticks (30 s in millisecond ticks); 3
    /// probes, 2 successes close it.
    pub const DEFAULT: BreakerConfig = BreakerConfig {
        consecutive_failures_to_open: 5,
        window_calls: 100,
        failure_rate_percent_to_open: 50,
        window_calls_min: 20,
        slow_call_ticks: 0,
        open_ticks: 30_000,
        half_open_probes_max: 3,
        half_open_successes_to_close: 2,
    };

    /// Checks every field's range (see the field docs).
    pub const fn validate(&self) -> Result<(), BreakerConfigError> {
        use BreakerConfigError as E;
        if self.window_calls == 0 || self.window_calls > WINDOW_CALLS_MAX {
            Err(E::WindowCalls)
        } else if self.failure_rate_percent_to_open > 100 {
            Err(E::FailureRatePercent)
        } else if self.window_calls_min == 0 || self.window_calls_min > self.window_calls {
            Err(E::WindowCallsMin)
        } else if self.half_open_probes_max == 0 || self.half_open_probes_max > PROBES_MAX {
            Err(E::HalfOpenProbesMax)
        } else if self.half_open_successes_to_close == 0
            || self.half_open_successes_to_close > self.half_open_probes_max
        {
            Err(E::HalfOpenSuccessesToClose)
        } else {
            Ok(())
        }
    }

    /// Whether an outcome counts as a failure: a failure, or a success at least
    /// `slow_call_ticks` slow.
    #[inline]
    pub const fn is_failure(&self, outcome: Outcome, latency_ticks: u64) -> bool {
        match outcome {
            Outcome::Failure => true,
            Outcome::Success => self.slow_call_ticks != 0 && latency_ticks >= self.slow_call_ticks,
        }
    }

    /// Whether the closed-state statistics call for opening: a streak of `streak` failures,
    /// `failures` of the `calls` in the window.
    pub const fn should_open(&self, streak: u32, failures: u32, calls: u32) -> bool {
        let by_streak =
            self.consecutive_failures_to_open != 0 && streak >= self.consecutive_failures_to_open;
        let by_rate = self.failure_rate_percent_to_open != 0
            && calls >= self.window_calls_min
            && failures as u64 * 100 >= self.failure_rate_percent_to_open as u64 * calls as u64;
        by_streak || by_rate
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A [`BreakerConfig`] field out of range; each variant names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerConfigError {
    /// `window_calls` is not in `1 ..= WINDOW_CALLS_MAX`.
    WindowCalls,
    /// `failure_rate_percent_to_open` is above 100.
    FailureRatePercent,
    /// `window_calls_min` is not in `1 ..= window_calls`.
    WindowCallsMin,
    /// `half_open_probes_max` is not in `1 ..= PROBES_MAX`.
    HalfOpenProbesMax,
    /// `half_open_successes_to_close` is not in `1 ..= half_open_probes_max`.
    HalfOpenSuccessesToClose,
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerConfigError::WindowCalls => "breaker window_calls is not in 1..=256",
            BreakerConfigError::FailureRatePercent => {
                "breaker failure_rate_percent_to_open is above 100"
            }
            BreakerConfigError::WindowCallsMin => {
                "breaker window_calls_min is not in 1..=window_calls"
            }
            BreakerConfigError::HalfOpenProbesMax => {
                "breaker half_open_probes_max is not in 1..=64"
            }
            BreakerConfigError::HalfOpenSuccessesToClose => {
                "breaker half_open_successes_to_close is not in 1..=half_open_probes_max"
            }
        })
    }
}

impl core::error::Error for BreakerConfigError {}

/// How a call ended, as the breaker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded (it still counts as a failure if it was slow).
    Success,
    /// The call failed.
    Failure,
}

/// Leave to make one call; hand it back to [`Breaker::record`] (or [`Breaker::release`]).
#[must_use = "a permit's outcome must be recorded (or the permit released)"]
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    /// The state word of the period it was issued in, state and period bits only.
    period_word: usize,
    /// Whether taking it moved the breaker from open to half-open (the period's first probe).
    half_opened: bool,
}

impl Permit {
    /// `true` for a half-open probe, `false` for a closed-state call.
    pub fn is_probe(&self) -> bool {
        word::state(self.period_word) == State::HalfOpen
    }

    /// The transition taking this permit made: open to half-open for the first probe after
    /// the open period ended (exactly one caller gets it per period), else none.
    pub fn transition(&self) -> Option<Transition> {
        self.half_opened.then_some(Transition {
            from: State::Open,
            to: State::HalfOpen,
        })
    }
}

/// A call the breaker refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The state that refused: `Open`, or `HalfOpen` with every probe out.
    pub state: State,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is {}", self.state)
    }
}

impl core::error::Error for Rejected {}

/// How many of each transition a breaker has made (exact; wrapping at `usize::MAX`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TransitionCounts {
    /// Closed -> Open.
    pub closed_to_open: usize,
    /// Open -> HalfOpen.
    pub open_to_half_open: usize,
    /// HalfOpen -> Closed.
    pub half_open_to_closed: usize,
    /// HalfOpen -> Open.
    pub half_open_to_open: usize,
}

impl TransitionCounts {
    /// All transitions.
    pub const fn total(&self) -> usize {
        self.closed_to_open
            .wrapping_add(self.open_to_half_open)
            .wrapping_add(self.half_open_to_closed)
            .wrapping_add(self.half_open_to_open)
    }
}

/// The state word's fields (see the module docs for the layout).
mod word {
    use super::{State, PROBES_MAX};

    pub(super) const STATE_MASK: usize = 0b11;
    pub(super) const PENDING: usize = 1 << 2;
    const FIELD_MASK: usize = 0x7F;
    pub(super) const PROBE_ONE: usize = 1 << 3;
    pub(super) const SUCCESS_ONE: usize = 1 << 10;
    const PERIOD_SHIFT: u32 = 17;
    /// State and period bits: what a permit keeps.
    pub(super) const PERIOD_MASK: usize = STATE_MASK | (usize::MAX << PERIOD_SHIFT);

    const _: () = assert!(PROBES_MAX as usize <= FIELD_MASK);
    const _: () = assert!(usize::BITS - PERIOD_SHIFT >= 15);

    #[inline(always)]
    pub(super) const fn state(word: usize) -> State {
        State::from_code(word & STATE_MASK)
    }

    #[inline(always)]
    pub(super) const fn is_closed(word: usize) -> bool {
        word & STATE_MASK == State::Closed.code()
    }

    pub(super) const fn probes(word: usize) -> u32 {
        ((word >> 3) & FIELD_MASK) as u32
    }

    pub(super) const fn successes(word: usize) -> u32 {
        ((word >> 10) & FIELD_MASK) as u32
    }

    /// The first word of the next period, in `to`: period + 1, every field cleared.
    pub(super) const fn next_period(word: usize, to: State) -> usize {
        let period = (word >> PERIOD_SHIFT).wrapping_add(1);
        (period << PERIOD_SHIFT) | to.code()
    }
}

/// The failure-rate window's position, packed in one `AtomicU32`.
mod position {
    /// The slot the next call writes, `0 .. window_calls`.
    pub(super) const fn cursor(position: u32) -> u32 {
        position & 0xFFFF
    }

    /// Calls seen, saturating at `window_calls`.
    pub(super) const fn seen(position: u32) -> u32 {
        position >> 16
    }

    /// The position after one more call.
    pub(super) const fn advance(position: u32, window_calls: u32) -> u32 {
        let cursor = cursor(position) + 1;
        let cursor = if cursor == window_calls { 0 } else { cursor };
        let seen = seen(position) + (seen(position) < window_calls) as u32;
        (seen << 16) | cursor
    }
}

/// Bits per window word.
const WORD_BITS: u32 = usize::BITS;
/// Words of window bits.
const WINDOW_WORDS: usize = (WINDOW_CALLS_MAX / WORD_BITS) as usize;
const _: () = assert!(WINDOW_CALLS_MAX % WORD_BITS == 0);
const _: () = assert!(WINDOW_CALLS_MAX <= 0xFFFF);

/// A circuit breaker shared across threads and runs (`&self` methods; put it in an `Arc` or a
/// once-initialised static).
///
/// # Examples
///
/// ```
/// use flujo_core::policy::breaker::{Breaker, BreakerConfig, Outcome, State};
///
/// let breaker = Breaker::new(BreakerConfig {
///     consecutive_failures_to_open: 2,
///     open_ticks: 100,
///     half_open_probes_max: 1,
///     half_open_successes_to_close: 1,
///     ..BreakerConfig::DEFAULT
/// })
/// .unwrap();
///
/// let mut now = 0;
/// for _ in 0..2 {
///     let permit = breaker.try_acquire(now).unwrap();
///     breaker.record(permit, Outcome::Failure, 1, now);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// assert!(breaker.try_acquire(now + 99).is_err());
///
/// now += 100; // the open period is over: one probe goes through
/// let probe = breaker.try_acquire(now).unwrap();
/// assert!(breaker.try_acquire(now).is_err());
/// breaker.record(probe, Outcome::Success, 1, now);
/// assert_eq!(breaker.state(), State::Closed);
/// assert_eq!(breaker.transition_counts().total(), 3);
/// ```
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    /// The state word (layout in the module docs). Changed only by compare-and-swap, except
    /// the opener's release store that clears `PENDING`. Acquire/release: it publishes the
    /// deadline.
    state: AtomicUsize,
    /// High and low halves of the open deadline (ticks). Written (relaxed) only by the opener
    /// while the word is `Open | PENDING`; read between two loads of the word.
    deadline_hi: AtomicU32,
    deadline_lo: AtomicU32,
    /// Failures in a row in the closed period, `0 ..= consecutive_failures_to_open + threads`.
    /// Relaxed.
    streak: AtomicU32,
    /// The window's cursor (`0 .. window_calls`) and calls seen (`0 ..= window_calls`), see
    /// [`position`]. Advanced by relaxed compare-and-swap; the failure path then reads it with
    /// an acquire/release read-modify-write (see the module docs).
    position: AtomicU32,
    /// One bit per window slot, set when the call in it failed; bits at or past
    /// `window_calls` are never set. Relaxed.
    failure_bits: [AtomicUsize; WINDOW_WORDS],
    /// How many of `failure_bits` are set, kept by the read-modify-writes that flip them (a
    /// bit set adds one, a bit cleared takes one away), so the success path tests one word.
    /// Between a flip and its count it may be off by the flips in flight (wrapping below 0
    /// for a moment); it is exact whenever none is. Relaxed.
    failures: AtomicU32,
    /// Transitions made, by [`Transition::index`]. Incremented (relaxed) by each winner.
    transitions: [AtomicUsize; Transition::COUNT],
    /// Calls refused (open, or half-open with no probe left). Relaxed; only the refusing
    /// path, which is cold, touches it.
    refusals: AtomicUsize,
}

impl Breaker {
    /// A closed breaker with the rules of `config`, or the field that is out of range.
    pub fn new(config: BreakerConfig) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            state: AtomicUsize::new(State::Closed.code()),
            deadline_hi: AtomicU32::new(0),
            deadline_lo: AtomicU32::new(0),
            streak: AtomicU32::new(0),
            position: AtomicU32::new(0),
            failure_bits: core::array::from_fn(|_| AtomicUsize::new(0)),
            failures: AtomicU32::new(0),
            transitions: core::array::from_fn(|_| AtomicUsize::new(0)),
            refusals: AtomicUsize::new(0),
        })
    }

    /// The rules.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state (a breaker still writing its open deadline reads as `Open`).
    pub fn state(&self) -> State {
        word::state(self.state.load(Ordering::Acquire))
    }

    /// The calls refused so far ([`try_acquire`](Self::try_acquire) returned `Err`), by every
    /// user of the breaker.
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Counts a refusal and returns it.
    #[cold]
    fn refuse(&self, state: State) -> Result<Permit, Rejected> {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        Err(Rejected { state })
    }

    /// The transitions made so far.
    pub fn transition_counts(&self) -> TransitionCounts {
        let count = |index: usize| self.transitions[index].load(Ordering::Relaxed);
        TransitionCounts {
            closed_to_open: count(0),
            open_to_half_open: count(1),
            half_open_to_closed: count(2),
            half_open_to_open: count(3),
        }
    }

    /// Asks to make a call at `now`: a permit if the breaker is closed, or half-open with a
    /// probe left, or open with its deadline reached (which moves it to half-open and takes
    /// the first probe); otherwise the state that refused.
    #[inline]
    pub fn try_acquire(&self, now: u64) -> Result<Permit, Rejected> {
        let current = self.state.load(Ordering::Acquire);
        if word::is_closed(current) {
            return Ok(Permit {
                period_word: current,
                half_opened: false,
            });
        }
        self.try_acquire_slow(current, now)
    }

    #[cold]
    fn try_acquire_slow(&self, mut current: usize, now: u64) -> Result<Permit, Rejected> {
        loop {
            let next = match word::state(current) {
                State::Closed => {
                    return Ok(Permit {
                        period_word: current,
                        half_opened: false,
                    })
                }
                State::Open => {
                    if current & word::PENDING != 0 {
                        return self.refuse(State::Open);
                    }
                    let deadline = self.deadline();
                    let again = self.state.load(Ordering::Acquire);
                    if again != current {
                        // The halves may belong to a later period: read again.
                        current = again;
                        continue;
                    }
                    if now < deadline {
                        return self.refuse(State::Open);
                    }
                    word::next_period(current, self.legal(current, State::HalfOpen))
                        + word::PROBE_ONE
                }
                State::HalfOpen => {
                    if word::probes(current) >= self.config.half_open_probes_max {
                        return self.refuse(State::HalfOpen);
                    }
                    current + word::PROBE_ONE
                }
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let half_opened = word::state(current) == State::Open;
                    if half_opened {
                        self.count(State::Open, State::HalfOpen);
                    }
                    debug_assert!(word::probes(next) <= self.config.half_open_probes_max);
                    return Ok(Permit {
                        period_word: next & word::PERIOD_MASK,
                        half_opened,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Records how the call of `permit` ended: its outcome, its latency, and `now` (the
    /// time an opening counts from). Returns the transition it caused, if any. An outcome from
    /// an earlier period (the breaker changed state since the permit was issued) is ignored.
    #[inline]
    pub fn record(
        &self,
        permit: Permit,
        outcome: Outcome,
        latency_ticks: u64,
        now: u64,
    ) -> Option<Transition> {
        let failed = self.config.is_failure(outcome, latency_ticks);
        if !word::is_closed(permit.period_word) {
            debug_assert_eq!(word::state(permit.period_word), State::HalfOpen);
            self.probe_outcome(permit.period_word, failed, now)
        } else if failed {
            self.closed_failure(permit.period_word, now)
        } else {
            self.closed_success(permit.period_word);
            None
        }
    }

    /// Gives a permit back without an outcome (the call was never made, or was cancelled):
    /// a half-open probe becomes available again; a closed permit changes nothing.
    pub fn release(&self, permit: Permit) {
        if word::state(permit.period_word) != State::HalfOpen {
            return;
        }
        let mut current = self.state.load(Ordering::Acquire);
        while current & word::PERIOD_MASK == permit.period_word {
            debug_assert!(word::probes(current) >= 1);
            match self.state.compare_exchange_weak(
                current,
                current - word::PROBE_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    fn closed_success(&self, period_word: usize) {
        let streak_set = self.streak.load(Ordering::Relaxed) != 0;
        // A full window without failures stays so under a success.
        let window_clean = position::seen(self.position.load(Ordering::Relaxed))
            == self.config.window_calls
            && !self.window_has_failures();
        if !streak_set && window_clean {
            return; // Nothing to write: the healthy hot path.
        }
        // Relaxed: the check only filters outcomes of finished periods (see the module docs).
        if self.state.load(Ordering::Relaxed) != period_word {
            return;
        }
        if streak_set {
            self.streak.store(0, Ordering::Relaxed);
        }
        if !window_clean {
            self.window_push(false);
        }
    }

    #[cold]
    fn closed_failure(&self, period_word: usize, now: u64) -> Option<Transition> {
        let current = self.state.load(Ordering::Relaxed);
        if current != period_word {
            return None;
        }
        let streak = if self.config.consecutive_failures_to_open != 0 {
            self.streak.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        self.window_push(true);
        // Read-modify-write the position (a no-op value change) to read the latest one, and
        // with it, by acquire/release, every window write of the failures that did the same
        // before: of racing failures, the last to get here sees all of them, so failures
        // that fill the window together cannot all miss the opening.
        let calls = position::seen(self.position.fetch_or(0, Ordering::AcqRel));
        let failures = self.window_failures();
        if !self.config.should_open(streak, failures, calls) {
            return None;
        }
        self.open(current, now).ok()
    }

    #[cold]
    fn probe_outcome(&self, period_word: usize, failed: bool, now: u64) -> Option<Transition> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & word::PERIOD_MASK != period_word {
                return None;
            }
            if failed {
                match self.open(current, now) {
                    Ok(transition) => return Some(transition),
                    Err(actual) => {
                        current = actual;
                        continue;
                    }
                }
            }
            let successes = word::successes(current) + 1;
            debug_assert!(successes <= word::probes(current));
            let closes = successes >= self.config.half_open_successes_to_close;
            let next = if closes {
                word::next_period(current, self.legal(current, State::Closed))
            } else {
                current + word::SUCCESS_ONE
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if closes => return Some(self.count(State::HalfOpen, State::Closed)),
                Ok(_) => return None,
                Err(actual) => current = actual,
            }
        }
    }

    /// Moves the breaker from the state of `current` to Open at `now`, if the word is still
    /// `current`; otherwise returns the word found.
    fn open(&self, current: usize, now: u64) -> Result<Transition, usize> {
        let from = word::state(current);
        let pending = word::next_period(current, self.legal(current, State::Open)) | word::PENDING;
        self.state
            .compare_exchange(current, pending, Ordering::Acquire, Ordering::Acquire)?;
        // This thread alone now writes the deadline and clears the statistics: every other
        // thread treats `PENDING` as "open, keep out".
        self.streak.store(0, Ordering::Relaxed);
        self.position.store(0, Ordering::Relaxed);
        for bits in &self.failure_bits {
            let old = bits.swap(0, Ordering::Relaxed);
            if old != 0 {
                self.failures.fetch_sub(old.count_ones(), Ordering::Relaxed);
            }
        }
        let deadline = now.saturating_add(self.config.open_ticks);
        // The two halves of the u64, truncated by intent.
        self.deadline_hi
            .store((deadline >> 32) as u32, Ordering::Relaxed);
        self.deadline_lo.store(deadline as u32, Ordering::Relaxed);
        let transition = self.count(from, State::Open);
        self.state
            .store(pending & !word::PENDING, Ordering::Release);
        Ok(transition)
    }

    /// The open deadline; consistent only if the state word is unchanged around the call.
    fn deadline(&self) -> u64 {
        let hi = self.deadline_hi.load(Ordering::Relaxed);
        let lo = self.deadline_lo.load(Ordering::Relaxed);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Checks `current`'s state -> `to` against the transition table and returns `to`.
    fn legal(&self, current: usize, to: State) -> State {
        match transition(word::state(current), to) {
            Ok(_) => to,
            Err(illegal) => panic!("{}", illegal),
        }
    }

    /// Counts a transition this thread won.
    fn count(&self, from: State, to: State) -> Transition {
        let transition = match transition(from, to) {
            Ok(transition) => transition,
            Err(illegal) => panic!("{}", illegal),
        };
        self.transitions[transition.index()].fetch_add(1, Ordering::Relaxed);
        transition
    }

    /// Writes one call into the window.
    fn window_push(&self, failed: bool) {
        let window_calls = self.config.window_calls;
        let mut old = self.position.load(Ordering::Relaxed);
        loop {
            let new = position::advance(old, window_calls);
            match self.position.compare_exchange_weak(
                old,
                new,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => old = actual,
            }
        }
        let slot = position::cursor(old);
        debug_assert!(slot < window_calls);
        let bits = &self.failure_bits[(slot / WORD_BITS) as usize];
        let mask = 1usize << (slot % WORD_BITS);
        if failed {
            if bits.fetch_or(mask, Ordering::Relaxed) & mask == 0 {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        } else if bits.load(Ordering::Relaxed) & mask != 0
            && bits.fetch_and(!mask, Ordering::Relaxed) & mask != 0
        {
            self.failures.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Failures in the window: the popcount of its bits.
    fn window_failures(&self) -> u32 {
        // Bits at or past `window_calls` are never set, so every word can be counted.
        self.failure_bits
            .iter()
            .map(|bits| bits.load(Ordering::Relaxed).count_ones())
            .sum()
    }

    /// The failure count the success path tests, and the set bits it stands for (equal
    /// whenever no outcome is being recorded).
    #[cfg(any(test, feature = "check"))]
    pub(crate) fn failure_counts(&self) -> (u32, u32) {
        (
            self.failures.load(Ordering::Relaxed),
            self.window_failures(),
        )
    }

    /// Whether the window holds a failure: the success path's test, one load.
    #[inline(always)]
    fn window_has_failures(&self) -> bool {
        self.failures.load(Ordering::Relaxed) != 0
    }
}
