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
//! bit  2      Open: PENDING, the opener is still writing the deadline
//!             Closed: CLEAN, the statistics are healthy (see "The clean bit" below)
//! bits 3..10  HalfOpen: probes issued in this half-open period, 0 ..= BREAKER_PROBES_MAX
//! bits 10..17 HalfOpen: probe successes in this half-open period, 0 ..= BREAKER_PROBES_MAX
//! bits 3..17  Closed: the failure generation, +1 (wrapping at 2^14) on every failure recorded
//! bits 17..   period: +1 on every transition (wrapping; 15 bits on 32-bit targets)
//! ```
//!
//! Every write to the word is a read-modify-write (compare-and-swap, and the opener's
//! `fetch_and` that clears `PENDING`), with release ordering, so the word's modification
//! order is one release sequence: a thread that loads the word with acquire sees every write
//! that was made before any write to the word earlier than the one it read.
//!
//! A [`Permit`] remembers the word it was issued in; only the state and period bits identify
//! the period (the clean bit and the failure generation are not a new period, and neither
//! counts as a transition). An outcome recorded after the period ended is ignored (its period
//! number is stale), so a late outcome can never trigger a transition. (On 32-bit targets the
//! period number wraps after 32768 transitions: a permit held that long could be taken for a
//! current one.)
//!
//! The open deadline is a `u64` kept as two `AtomicU32` halves, which only the thread that won
//! the transition to Open writes, while the word says `Open | PENDING`; it then publishes
//! `Open` (a release read-modify-write that clears `PENDING`). A reader loads the word
//! (acquire), reads the halves and loads the word again: if it changed, the halves may be torn
//! and the reader starts over (a seqlock whose sequence is the state word; the
//! compare-and-swap that moves Open to HalfOpen would fail on a changed word anyway, the
//! second load makes the rejection path consistent too). While the word is pending, acquires
//! are rejected: the breaker has just opened, so that is the right answer (it lasts as long as
//! the opener is pre-empted, at worst).
//!
//! The closed-state statistics live beside the word: a consecutive-failure counter (the
//! streak), the window's failure bits (one per slot, `BREAKER_WINDOW_CALLS_MAX` slots), a count of
//! the set bits (`failures`, so the success path tests one word instead of a popcount) and
//! the window's position (cursor and number of calls seen, packed in one `AtomicU32`). The
//! opener clears them while the word is pending. Each is updated atomically but not together
//! with the others, so under races:
//! - of failures racing in one closed period, the last to evaluate the rules sees every one
//!   of the others' window writes (it reads the position with an acquire/release
//!   read-modify-write after its own writes, as each of them did), so failures that together
//!   meet a rule cannot all miss the opening; the streak is a single counter, exact;
//! - a success racing with them may or may not be seen by that evaluation (it may take
//!   effect as if it came before them all);
//! - an outcome whose recording races with a transition can land in the next closed period's
//!   statistics;
//! - with more than `window_calls` records in flight, two can write the same slot in either
//!   order;
//! - `failures` may be off by the bit flips in flight (wrapping below 0 for a moment); it is
//!   exact whenever none is. The rate rule counts the bits themselves (a popcount).
//!
//! Single-threaded use gives exactly the rules above (the fuzz target checks that against a
//! plain sequential model).
//!
//! # The clean bit
//!
//! A success changes nothing when the statistics are *healthy*: the streak is 0 and the
//! window is full and holds no failure (so the success would only overwrite a success). While
//! Closed, the state word's `CLEAN` bit says so. A permit keeps the word it was issued in with
//! `CLEAN` set (closed: the whole word; a probe: state and period bits), so a success record
//! on a clean breaker in its permit's period and failure generation returns after one relaxed
//! load of the word and one compare with the permit's (plus the slow-call test, one compare
//! with a precomputed threshold that no latency exceeds when the rule is off): nothing is
//! written, so threads sharing a healthy breaker never contend for its cache lines. An
//! acquire on a closed breaker is one load, a test and an `or`.
//!
//! - **Set**: only by a success, on the slow path: it loads the word with acquire (not
//!   clean, its own period), writes its statistics as it always did, reads them again and, if
//!   they are healthy, sets `CLEAN` by a compare-and-swap *from the word it loaded*.
//! - **Cleared**: by every failure that writes statistics, after writing them: a
//!   compare-and-swap that clears `CLEAN` and adds one to the failure generation if the word
//!   is Closed (whatever its period), and rewrites the same word otherwise (a write all the
//!   same, for the release sequence). Transitions clear it too: every new period's word
//!   starts with `CLEAN` clear and generation 0, and the opener clears the statistics while
//!   `PENDING`, so a new closed period is not clean until a success finds it healthy.
//!
//! **Invariant**: while the word is `Closed | CLEAN`, the statistics are healthy except for
//! the writes of failures still being recorded (which clear the bit when they finish); with
//! no record in flight, `CLEAN` implies healthy. Single-threaded, `CLEAN` holds exactly when
//! the breaker is Closed and healthy, after every call (the fuzz program asserts it; under
//! races a success may miss setting it, which only costs the slow path).
//!
//! Why: the setter's compare-and-swap succeeds only if the word is still the one it loaded,
//! and every failure's clearing write changes a closed word (the generation), so no failure
//! finished its clearing write between the setter's load and its swap. A failure whose
//! clearing write came before the setter's load is visible to the setter's reads (release
//! sequence, acquire load), and the setter saw healthy statistics after it; a failure whose
//! clearing write comes after the swap clears the bit. A stale failure (its period ended
//! while it wrote) still writes the word, so a setter in a later period sees its writes if
//! they survived the opener's clearing (this is why the opener publishes `Open` with a
//! read-modify-write: a plain store would end the release sequence, and loom finds the
//! stale failure hidden under the bit). The generation wraps after 16384 failures: a setter
//! pre-empted between its load and its swap over exactly that many failures recorded in
//! one closed period could set the bit over a failure (like the period wrap, taken as
//! impossible in practice).
//!
//! A success that skips on `CLEAN` while a failure is still being recorded takes effect as
//! if it came before that failure (the race rule above). A success whose permit is of an
//! earlier failure generation of the same period takes the slow path, which writes nothing
//! if it finds the bit set. Neither a clean flip nor a generation step starts a period: the
//! period filter (stale outcomes, [`Breaker::release`], probes) compares the state and
//! period bits only, so permits stay current across them, and neither is counted as a
//! transition.
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
pub enum BreakerState {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A bounded number of probe calls pass; their outcomes decide.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in declaration order.
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The state's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    const fn code(self) -> usize {
        self as usize
    }

    #[inline(always)]
    const fn from_code(code: usize) -> BreakerState {
        match code {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => panic!("breaker state word holds an unknown state"),
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A legal state change; only [`Transition::new`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transition {
    from: BreakerState,
    to: BreakerState,
}

impl Transition {
    /// The number of legal transitions.
    pub const COUNT: usize = 4;

    /// The state left.
    pub const fn from(self) -> BreakerState {
        self.from
    }

    /// The state entered.
    pub const fn to(self) -> BreakerState {
        self.to
    }

    /// The transition's index in `0 .. Transition::COUNT`: closed->open, open->half-open,
    /// half-open->closed, half-open->open.
    pub const fn index(self) -> usize {
        match (self.from, self.to) {
            (BreakerState::Closed, BreakerState::Open) => 0,
            (BreakerState::Open, BreakerState::HalfOpen) => 1,
            (BreakerState::HalfOpen, BreakerState::Closed) => 2,
            (BreakerState::HalfOpen, BreakerState::Open) => 3,
            _ => panic!("Transition holds an illegal pair"),
        }
    }
}

/// A state change that the breaker never makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The state it would leave.
    pub from: BreakerState,
    /// The state it would enter.
    pub to: BreakerState,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal breaker transition {} -> {}", self.from, self.to)
    }
}

impl core::error::Error for IllegalTransition {}

impl Transition {
    /// The legal-transition table: closed->open, open->half-open, half-open->closed and
    /// half-open->open; everything else (self-loops included) is illegal.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::policy::{BreakerState, Transition};
    ///
    /// assert!(Transition::new(BreakerState::Closed, BreakerState::Open).is_ok());
    /// assert!(Transition::new(BreakerState::Open, BreakerState::Closed).is_err());
    /// ```
    pub const fn new(
        from: BreakerState,
        to: BreakerState,
    ) -> Result<Transition, IllegalTransition> {
        match (from, to) {
            (BreakerState::Closed, BreakerState::Open)
            | (BreakerState::Open, BreakerState::HalfOpen)
            | (BreakerState::HalfOpen, BreakerState::Closed)
            | (BreakerState::HalfOpen, BreakerState::Open) => Ok(Transition { from, to }),
            _ => Err(IllegalTransition { from, to }),
        }
    }
}

/// The most calls a failure-rate window holds.
pub const BREAKER_WINDOW_CALLS_MAX: u32 = 256;
/// The most probes a half-open period allows.
pub const BREAKER_PROBES_MAX: u32 = 64;

/// A breaker's rules. Counts of 0 switch their trigger off where the field says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerConfig {
    /// Opens after this many failures in a row (0: this trigger is off).
    pub consecutive_failures_to_open: u32,
    /// The failure-rate window: the last this many calls, `1 ..= BREAKER_WINDOW_CALLS_MAX`.
    pub window_calls: u32,
    /// Opens when failures are at least this percent of the calls in the window,
    /// `0 ..= 100` (0: this trigger is off).
    pub failure_rate_percent_to_open: u32,
    /// The rate trigger waits for this many calls in the window, `1 ..= window_calls`.
    pub window_calls_min: u32,
    /// A call whose latency is at least this many ticks is a failure (0: off). Ticks are the
    /// host clock's (nanoseconds under `flujo-runtime`).
    pub slow_call_ticks: u64,
    /// How long the breaker stays open, in the host clock's ticks (nanoseconds under
    /// `flujo-runtime`).
    pub open_ticks: u64,
    /// Probes allowed per half-open period, `1 ..= BREAKER_PROBES_MAX`.
    pub half_open_probes_max: u32,
    /// Probe successes that close the breaker, `1 ..= half_open_probes_max`.
    pub half_open_successes_to_close: u32,
}

impl BreakerConfig {
    /// Opens after 5 failures in a row or at 50% failures over the last 100 calls (once 20
    /// were seen); no slow-call rule; open for 30 000 ticks: 30 s in millisecond ticks, but
    /// 30 µs in `flujo-runtime`'s nanosecond ticks (use its `breakers::DEFAULT_CONFIG`
    /// there, open for 30 s); 3 probes, 2 successes close it.
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
        if self.window_calls == 0 || self.window_calls > BREAKER_WINDOW_CALLS_MAX {
            Err(E::WindowCalls)
        } else if self.failure_rate_percent_to_open > 100 {
            Err(E::FailureRatePercent)
        } else if self.window_calls_min == 0 || self.window_calls_min > self.window_calls {
            Err(E::WindowCallsMin)
        } else if self.half_open_probes_max == 0 || self.half_open_probes_max > BREAKER_PROBES_MAX {
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
    pub const fn is_failure(&self, outcome: CallOutcome, latency_ticks: u64) -> bool {
        match outcome {
            CallOutcome::Failure => true,
            CallOutcome::Success => {
                self.slow_call_ticks != 0 && latency_ticks >= self.slow_call_ticks
            }
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
#[non_exhaustive]
pub enum BreakerConfigError {
    /// `window_calls` is not in `1 ..= BREAKER_WINDOW_CALLS_MAX`.
    WindowCalls,
    /// `failure_rate_percent_to_open` is above 100.
    FailureRatePercent,
    /// `window_calls_min` is not in `1 ..= window_calls`.
    WindowCallsMin,
    /// `half_open_probes_max` is not in `1 ..= BREAKER_PROBES_MAX`.
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
pub enum CallOutcome {
    /// The call succeeded (it still counts as a failure if it was slow).
    Success,
    /// The call failed.
    Failure,
}

/// Leave to make one call; hand it back to [`Breaker::record`] (or [`Breaker::release`]).
///
/// Two permits are equal when they belong to the same period and the same one of them
/// reports the half-open transition.
#[must_use = "a permit's outcome must be recorded (or the permit released)"]
#[derive(Debug)]
pub struct Permit {
    /// The state word it was issued in with the flag bit set: a closed permit keeps the whole
    /// word (failure generation included) `| CLEAN`, so the healthy record path is one
    /// compare with the live word; a probe keeps the state and period bits `| CLEAN`, which
    /// no live word ever equals (the bit is never set while HalfOpen). Only
    /// [`word::same_period`] identifies the period.
    period_word: usize,
    /// Whether taking it moved the breaker from open to half-open (the period's first probe).
    half_opened: bool,
}

impl PartialEq for Permit {
    fn eq(&self, other: &Self) -> bool {
        word::same_period(self.period_word, other.period_word)
            && self.half_opened == other.half_opened
    }
}

impl Eq for Permit {}

impl Permit {
    /// `true` for a half-open probe, `false` for a closed-state call.
    pub fn is_probe(&self) -> bool {
        word::state(self.period_word) == BreakerState::HalfOpen
    }

    /// The transition taking this permit made: open to half-open for the first probe after
    /// the open period ended (exactly one caller gets it per period), else none.
    pub fn transition(&self) -> Option<Transition> {
        self.half_opened.then_some(Transition {
            from: BreakerState::Open,
            to: BreakerState::HalfOpen,
        })
    }

    /// The permit as one word, never 0 (the flag bit is set), for a caller that keeps a
    /// permit in a register; [`from_word`](Self::from_word) gives it back once its
    /// transition, if any, has been taken.
    #[inline(always)]
    pub(crate) fn into_word(self) -> usize {
        debug_assert_ne!(self.period_word, 0, "the flag bit is set");
        self.period_word
    }

    /// The permit [`into_word`](Self::into_word) gave `word` for (its transition already
    /// taken: recording and releasing never look at it).
    #[inline(always)]
    pub(crate) fn from_word(word: usize) -> Self {
        Permit {
            period_word: word,
            half_opened: false,
        }
    }
}

/// A call the breaker refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The state that refused: `Open`, or `HalfOpen` with every probe out.
    pub state: BreakerState,
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
    use super::{BreakerState, BREAKER_PROBES_MAX};

    pub(super) const STATE_MASK: usize = 0b11;
    /// Open only: the opener is still writing the deadline.
    pub(super) const PENDING: usize = 1 << 2;
    /// Closed only: the statistics are healthy (the same bit as `PENDING`; never set while
    /// HalfOpen).
    pub(super) const CLEAN: usize = 1 << 2;
    const FIELD_MASK: usize = 0x7F;
    pub(super) const PROBE_ONE: usize = 1 << 3;
    pub(super) const SUCCESS_ONE: usize = 1 << 10;
    /// Closed only: the failure generation, in the bits of the two half-open fields.
    const GENERATION_ONE: usize = 1 << 3;
    const GENERATION_MASK: usize = 0x3FFF << 3;
    const PERIOD_SHIFT: u32 = 17;
    /// BreakerState and period bits: what identifies a period.
    pub(super) const PERIOD_MASK: usize = STATE_MASK | (usize::MAX << PERIOD_SHIFT);

    const _: () = assert!(BREAKER_PROBES_MAX as usize <= FIELD_MASK);
    const _: () = assert!(usize::BITS - PERIOD_SHIFT >= 15);
    const _: () = assert!(GENERATION_MASK == (FIELD_MASK * PROBE_ONE) | (FIELD_MASK * SUCCESS_ONE));
    const _: () = assert!(GENERATION_MASK & (PERIOD_MASK | CLEAN) == 0);

    /// Whether two words belong to the same period (same state and period bits).
    #[inline(always)]
    pub(super) const fn same_period(a: usize, b: usize) -> bool {
        (a ^ b) & PERIOD_MASK == 0
    }

    /// A closed word after a failure: `CLEAN` cleared, the generation one more (wrapping).
    pub(super) const fn failed(word: usize) -> usize {
        (word & !(CLEAN | GENERATION_MASK)) | (word.wrapping_add(GENERATION_ONE) & GENERATION_MASK)
    }

    #[inline(always)]
    pub(super) const fn state(word: usize) -> BreakerState {
        BreakerState::from_code(word & STATE_MASK)
    }

    #[inline(always)]
    pub(super) const fn is_closed(word: usize) -> bool {
        word & STATE_MASK == BreakerState::Closed.code()
    }

    pub(super) const fn probes(word: usize) -> u32 {
        ((word >> 3) & FIELD_MASK) as u32
    }

    pub(super) const fn successes(word: usize) -> u32 {
        ((word >> 10) & FIELD_MASK) as u32
    }

    /// The first word of the next period, in `to`: period + 1, every field cleared.
    pub(super) const fn next_period(word: usize, to: BreakerState) -> usize {
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
const WINDOW_WORDS: usize = (BREAKER_WINDOW_CALLS_MAX / WORD_BITS) as usize;
const _: () = assert!(BREAKER_WINDOW_CALLS_MAX.is_multiple_of(WORD_BITS));
const _: () = assert!(BREAKER_WINDOW_CALLS_MAX <= 0xFFFF);

/// A circuit breaker shared across threads and runs (`&self` methods; put it in an `Arc` or a
/// once-initialised static).
///
/// # Examples
///
/// ```
/// use flujo_core::policy::{Breaker, BreakerConfig, BreakerState, CallOutcome};
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
///     breaker.record(permit, CallOutcome::Failure, 1, now);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.try_acquire(now + 99).is_err());
///
/// now += 100; // the open period is over: one probe goes through
/// let probe = breaker.try_acquire(now).unwrap();
/// assert!(breaker.try_acquire(now).is_err());
/// breaker.record(probe, CallOutcome::Success, 1, now);
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// assert_eq!(breaker.transition_counts().total(), 3);
/// ```
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    /// A success slower than this is a failure: `slow_call_ticks - 1`, wrapping, so a
    /// `slow_call_ticks` of 0 (off) is `u64::MAX`, which no latency exceeds.
    slow_after: u64,
    /// The state word (layout in the module docs). Changed only by read-modify-writes
    /// (compare-and-swap, and the opener's `fetch_and` that clears `PENDING`), all release
    /// or continuing a release sequence: it publishes the deadline, and each failure's
    /// statistics to the success that marks the breaker clean.
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
    /// bit set adds one, a bit cleared takes one away), so the health test reads one word.
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
            slow_after: config.slow_call_ticks.wrapping_sub(1),
            state: AtomicUsize::new(BreakerState::Closed.code()),
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
    pub fn state(&self) -> BreakerState {
        word::state(self.state.load(Ordering::Acquire))
    }

    /// The calls refused so far ([`try_acquire`](Self::try_acquire) returned `Err`), by every
    /// user of the breaker.
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Counts a refusal and returns it.
    #[cold]
    fn refuse(&self, state: BreakerState) -> Result<Permit, Rejected> {
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
            // The whole word, generation included, as if clean: `record` compares it.
            return Ok(Permit {
                period_word: current | word::CLEAN,
                half_opened: false,
            });
        }
        self.try_acquire_slow(current, now)
    }

    #[cold]
    fn try_acquire_slow(&self, mut current: usize, now: u64) -> Result<Permit, Rejected> {
        loop {
            let next = match word::state(current) {
                BreakerState::Closed => {
                    return Ok(Permit {
                        period_word: current | word::CLEAN,
                        half_opened: false,
                    })
                }
                BreakerState::Open => {
                    if current & word::PENDING != 0 {
                        return self.refuse(BreakerState::Open);
                    }
                    let deadline = self.deadline();
                    let again = self.state.load(Ordering::Acquire);
                    if again != current {
                        // The halves may belong to a later period: read again.
                        current = again;
                        continue;
                    }
                    if now < deadline {
                        return self.refuse(BreakerState::Open);
                    }
                    word::next_period(current, self.legal(current, BreakerState::HalfOpen))
                        + word::PROBE_ONE
                }
                BreakerState::HalfOpen => {
                    if word::probes(current) >= self.config.half_open_probes_max {
                        return self.refuse(BreakerState::HalfOpen);
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
                    let half_opened = word::state(current) == BreakerState::Open;
                    if half_opened {
                        self.count(BreakerState::Open, BreakerState::HalfOpen);
                    }
                    debug_assert!(word::probes(next) <= self.config.half_open_probes_max);
                    return Ok(Permit {
                        period_word: (next & word::PERIOD_MASK) | word::CLEAN,
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
        outcome: CallOutcome,
        latency_ticks: u64,
        now: u64,
    ) -> Option<Transition> {
        let failed = matches!(outcome, CallOutcome::Failure) || latency_ticks > self.slow_after;
        debug_assert_eq!(failed, self.config.is_failure(outcome, latency_ticks));
        // The healthy hot path: a success on a clean breaker in the permit's period (and
        // failure generation) writes nothing. Only a closed word has the clean bit (a probe's
        // word never matches), and relaxed is enough: the bit only says that the success would
        // change nothing (see the module docs).
        if !failed && self.state.load(Ordering::Relaxed) == permit.period_word {
            return None;
        }
        self.record_slow(permit, failed, now)
    }

    /// [`record`](Self::record) past the healthy hot path.
    #[inline(never)]
    fn record_slow(&self, permit: Permit, failed: bool, now: u64) -> Option<Transition> {
        if !word::is_closed(permit.period_word) {
            debug_assert_eq!(word::state(permit.period_word), BreakerState::HalfOpen);
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
        if word::state(permit.period_word) != BreakerState::HalfOpen {
            return;
        }
        let mut current = self.state.load(Ordering::Acquire);
        while word::same_period(current, permit.period_word) {
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

    /// A success in a closed period, past the hot path: writes what it changes, then marks
    /// the breaker clean if the statistics are healthy (see the module docs).
    fn closed_success(&self, period_word: usize) {
        // Acquire: the statistics read below include the writes of every failure whose
        // clearing write came before the word loaded here.
        let current = self.state.load(Ordering::Acquire);
        if !word::same_period(current, period_word) {
            return; // An outcome of a finished period.
        }
        if current & word::CLEAN != 0 {
            return; // Healthy: the permit only carries an older generation of this period.
        }
        let streak_set = self.streak.load(Ordering::Relaxed) != 0;
        // A full window without failures stays so under a success.
        let window_clean = self.window_clean();
        if streak_set {
            self.streak.store(0, Ordering::Relaxed);
        }
        if !window_clean {
            self.window_push(false);
        }
        if (streak_set || !window_clean) && !self.healthy() {
            return;
        }
        // Fails if any failure cleared the bit (changing the generation) since the load, or
        // another success set it, or the period ended.
        let _ = self.state.compare_exchange(
            current,
            current | word::CLEAN,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Whether a success changes nothing: no streak, a full window without failures.
    #[inline(always)]
    fn healthy(&self) -> bool {
        self.streak.load(Ordering::Relaxed) == 0 && self.window_clean()
    }

    /// Whether the window is full and holds no failure.
    #[inline(always)]
    fn window_clean(&self) -> bool {
        position::seen(self.position.load(Ordering::Relaxed)) == self.config.window_calls
            && !self.window_has_failures()
    }

    /// Marks a failure's statistics written, after writing them: clears `CLEAN` and steps
    /// the failure generation of a closed word (of any period), rewrites any other word
    /// unchanged (release either way, see the module docs). Returns the word it wrote.
    fn note_failure(&self) -> usize {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let next = if word::is_closed(current) {
                word::failed(current)
            } else {
                current
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }

    #[cold]
    fn closed_failure(&self, period_word: usize, now: u64) -> Option<Transition> {
        if !word::same_period(self.state.load(Ordering::Relaxed), period_word) {
            return None;
        }
        let streak = if self.config.consecutive_failures_to_open != 0 {
            self.streak.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        self.window_push(true);
        // Clear the clean bit, now that this failure's statistics are written.
        let mut current = self.note_failure();
        // Read-modify-write the position (a no-op value change) to read the latest one, and
        // with it, by acquire/release, every window write of the failures that did the same
        // before: of racing failures, the last to get here sees all of them, so failures
        // that fill the window together cannot all miss the opening.
        let calls = position::seen(self.position.fetch_or(0, Ordering::AcqRel));
        let failures = self.window_failures();
        if !self.config.should_open(streak, failures, calls) {
            return None;
        }
        // The word may change within the period (another failure's generation, a success's
        // clean bit): open from the latest word of the period.
        while word::same_period(current, period_word) {
            match self.open(current, now) {
                Ok(transition) => return Some(transition),
                Err(actual) => current = actual,
            }
        }
        None
    }

    #[cold]
    fn probe_outcome(&self, period_word: usize, failed: bool, now: u64) -> Option<Transition> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if !word::same_period(current, period_word) {
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
                word::next_period(current, self.legal(current, BreakerState::Closed))
            } else {
                current + word::SUCCESS_ONE
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if closes => {
                    return Some(self.count(BreakerState::HalfOpen, BreakerState::Closed))
                }
                Ok(_) => return None,
                Err(actual) => current = actual,
            }
        }
    }

    /// Moves the breaker from the state of `current` to Open at `now`, if the word is still
    /// `current`; otherwise returns the word found.
    fn open(&self, current: usize, now: u64) -> Result<Transition, usize> {
        let from = word::state(current);
        let pending =
            word::next_period(current, self.legal(current, BreakerState::Open)) | word::PENDING;
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
        let transition = self.count(from, BreakerState::Open);
        // A read-modify-write, not a store: it keeps the word's release sequence unbroken
        // (failures may rewrite the pending word unchanged meanwhile, see `note_failure`).
        let published = self.state.fetch_and(!word::PENDING, Ordering::Release);
        debug_assert_eq!(published, pending);
        Ok(transition)
    }

    /// The open deadline; consistent only if the state word is unchanged around the call.
    fn deadline(&self) -> u64 {
        let hi = self.deadline_hi.load(Ordering::Relaxed);
        let lo = self.deadline_lo.load(Ordering::Relaxed);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Checks `current`'s state -> `to` against the transition table and returns `to`.
    fn legal(&self, current: usize, to: BreakerState) -> BreakerState {
        match Transition::new(word::state(current), to) {
            Ok(_) => to,
            Err(illegal) => panic!("{}", illegal),
        }
    }

    /// Counts a transition this thread won.
    fn count(&self, from: BreakerState, to: BreakerState) -> Transition {
        let transition = match Transition::new(from, to) {
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

    /// Whether the word is `Closed | CLEAN` (the healthy hot path is on), and whether the
    /// statistics are healthy (equal whenever no outcome is being recorded and the breaker
    /// is closed).
    #[cfg(any(test, feature = "check"))]
    pub(crate) fn clean(&self) -> (bool, bool) {
        let current = self.state.load(Ordering::Acquire);
        let closed = word::is_closed(current);
        (
            closed && current & word::CLEAN != 0,
            closed && self.healthy(),
        )
    }

    /// Whether the window holds a failure: the health test's, one load.
    #[inline(always)]
    fn window_has_failures(&self) -> bool {
        self.failures.load(Ordering::Relaxed) != 0
    }
}
