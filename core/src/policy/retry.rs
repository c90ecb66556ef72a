//! Retries: bounded backoff schedules and the per-execution retry state machine.
//!
//! Delays are ticks (the caller's time unit); the machine never waits, it only says how long
//! to wait. All arithmetic saturates and every schedule has a cap, so no configuration can
//! overflow or produce an unbounded delay. Jitter comes from the caller's seeded [`Rng`], so a
//! schedule is reproducible from its seed.
//!
//! Decorrelated jitter is the "decorrelated jitter" schedule of Marc Brooker's "Exponential
//! Backoff And Jitter" (AWS Architecture Blog, 2015), with the cap applied to the sampling
//! range rather than to the sample, so delays stay uniform below the cap.

use core::fmt;

use super::error::{ErrorClass, Recovery, RecoveryTable};
use super::rng::Rng;

/// The most attempts (first try included) a [`RetryPolicy`] allows.
pub const ATTEMPTS_MAX: u32 = 64;

/// How long to wait before each retry, in the host clock's ticks (nanoseconds under
/// `flujo-runtime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backoff {
    /// The same delay before every retry.
    Constant {
        /// The delay before each retry.
        delay_ticks: u64,
    },
    /// `base_ticks * factor^(retry - 1)`, saturating, capped at `delay_ticks_max`.
    Exponential {
        /// The delay before the first retry (`<= delay_ticks_max`).
        base_ticks: u64,
        /// The growth factor per retry (`>= 1`).
        factor: u32,
        /// The cap on every delay.
        delay_ticks_max: u64,
    },
    /// Each delay uniform in `base_ticks ..= min(delay_ticks_max, 3 * previous delay)`, the
    /// previous delay of the first retry being `base_ticks`.
    DecorrelatedJitter {
        /// The smallest delay (`>= 1`, `<= delay_ticks_max`).
        base_ticks: u64,
        /// The cap on every delay.
        delay_ticks_max: u64,
    },
}

impl Backoff {
    /// No wait between attempts.
    pub const NONE: Backoff = Backoff::Constant { delay_ticks: 0 };

    /// Checks the schedule's parameters (see each variant's field docs).
    pub const fn validate(&self) -> Result<(), RetryPolicyError> {
        match *self {
            Backoff::Constant { .. } => Ok(()),
            Backoff::Exponential {
                base_ticks,
                factor,
                delay_ticks_max,
            } => {
                if factor == 0 {
                    Err(RetryPolicyError::FactorZero)
                } else if base_ticks > delay_ticks_max {
                    Err(RetryPolicyError::BaseAboveMax)
                } else {
                    Ok(())
                }
            }
            Backoff::DecorrelatedJitter {
                base_ticks,
                delay_ticks_max,
            } => {
                if base_ticks == 0 {
                    Err(RetryPolicyError::JitterBaseZero)
                } else if base_ticks > delay_ticks_max {
                    Err(RetryPolicyError::BaseAboveMax)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The largest delay this schedule can produce.
    pub const fn delay_ticks_bound(&self) -> u64 {
        match *self {
            Backoff::Constant { delay_ticks } => delay_ticks,
            Backoff::Exponential {
                delay_ticks_max, ..
            }
            | Backoff::DecorrelatedJitter {
                delay_ticks_max, ..
            } => delay_ticks_max,
        }
    }

    /// The delay before retry number `retry` (`1` = the wait before the second attempt),
    /// given the previous delay (ignored except by the jitter schedule).
    fn delay_ticks(&self, retry: u32, delay_prev_ticks: u64, rng: &mut Rng) -> u64 {
        debug_assert!(retry >= 1);
        let delay_ticks = match *self {
            Backoff::Constant { delay_ticks } => delay_ticks,
            Backoff::Exponential {
                base_ticks,
                factor,
                delay_ticks_max,
            } => {
                let growth = u64::from(factor).saturating_pow(retry - 1);
                base_ticks.saturating_mul(growth).min(delay_ticks_max)
            }
            Backoff::DecorrelatedJitter {
                base_ticks,
                delay_ticks_max,
            } => {
                let high = delay_prev_ticks.saturating_mul(3).min(delay_ticks_max);
                // `delay_prev_ticks >= base_ticks` (it starts at base and every sample is at
                // least base), so the range is never empty.
                debug_assert!(high >= base_ticks);
                rng.between(base_ticks, high.max(base_ticks))
            }
        };
        debug_assert!(delay_ticks <= self.delay_ticks_bound());
        delay_ticks
    }
}

/// A retry configuration that failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryPolicyError {
    /// `max_attempts` is 0 or above [`ATTEMPTS_MAX`].
    AttemptsOutOfRange {
        /// The value asked for.
        requested: u32,
    },
    /// An exponential schedule's factor is 0.
    FactorZero,
    /// A schedule's base delay is above its cap.
    BaseAboveMax,
    /// A decorrelated jitter schedule's base delay is 0 (every delay would be 0).
    JitterBaseZero,
}

impl fmt::Display for RetryPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RetryPolicyError::AttemptsOutOfRange { requested } => {
                write!(f, "max_attempts {requested} is not in 1..={ATTEMPTS_MAX}")
            }
            RetryPolicyError::FactorZero => f.write_str("exponential backoff factor is 0"),
            RetryPolicyError::BaseAboveMax => {
                f.write_str("backoff base delay is above its delay_ticks_max")
            }
            RetryPolicyError::JitterBaseZero => f.write_str("decorrelated jitter base delay is 0"),
        }
    }
}

impl core::error::Error for RetryPolicyError {}

/// A step's retry policy: how many attempts in all (first try included, `1 ..= 64`) and the
/// backoff between them. Validated on construction.
///
/// # Examples
///
/// ```
/// use flujo_core::policy::{Backoff, Decision, ErrorClass, RecoveryTable, RetryPolicy, Rng};
///
/// let policy = RetryPolicy::new(
///     3,
///     Backoff::Exponential { base_ticks: 10, factor: 2, delay_ticks_max: 1_000 },
/// )
/// .unwrap();
/// let table = RecoveryTable::DEFAULT;
/// let mut rng = Rng::new(1);
/// let mut state = policy.start();
/// assert_eq!(state.on_failure(ErrorClass::Transient, &table, &mut rng), Decision::RetryAfter(10));
/// assert_eq!(state.on_failure(ErrorClass::Timeout, &table, &mut rng), Decision::RetryAfter(20));
/// // Three attempts made: no retry left, so the step falls back.
/// assert_eq!(state.on_failure(ErrorClass::Transient, &table, &mut rng), Decision::Fallback);
/// assert_eq!(state.attempts(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    attempts_max: u32,
    backoff: Backoff,
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts_max: 1,
        backoff: Backoff::NONE,
    };

    /// A policy of `attempts_max` attempts in all (`1 ..= ATTEMPTS_MAX`) with `backoff`
    /// between them.
    pub const fn new(attempts_max: u32, backoff: Backoff) -> Result<Self, RetryPolicyError> {
        if attempts_max == 0 || attempts_max > ATTEMPTS_MAX {
            return Err(RetryPolicyError::AttemptsOutOfRange {
                requested: attempts_max,
            });
        }
        match backoff.validate() {
            Ok(()) => Ok(Self {
                attempts_max,
                backoff,
            }),
            Err(e) => Err(e),
        }
    }

    /// The number of attempts allowed, first try included.
    pub const fn attempts_max(&self) -> u32 {
        self.attempts_max
    }

    /// The backoff schedule.
    pub const fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The retry state of a new execution, its first attempt under way.
    pub const fn start(&self) -> RetryState {
        RetryState::new(*self)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::NONE
    }
}

/// What the executor does after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Wait this many ticks, then make another attempt.
    RetryAfter(u64),
    /// Run the fallback step (a step without one fails).
    Fallback,
    /// Succeed with the step's default output.
    Skip,
    /// Fail the step.
    Fail,
    /// Abort the run (usage or cancelled failures).
    Abort,
}

/// The retry state of one step execution: how many attempts were made and the last delay.
///
/// Created by [`RetryPolicy::start`] with the first attempt under way; each
/// [`on_failure`](Self::on_failure) that answers [`Decision::RetryAfter`] starts the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryState {
    policy: RetryPolicy,
    /// Attempts started so far, in `1 ..= policy.attempts_max`.
    attempts: u32,
    /// The delay returned by the last retry (the base delay before the first), for the
    /// decorrelated jitter schedule.
    delay_prev_ticks: u64,
}

impl RetryState {
    /// The state of a new execution of a step under `policy`, its first attempt under way.
    pub const fn new(policy: RetryPolicy) -> Self {
        let delay_prev_ticks = match policy.backoff {
            Backoff::DecorrelatedJitter { base_ticks, .. } => base_ticks,
            _ => 0,
        };
        Self {
            policy,
            attempts: 1,
            delay_prev_ticks,
        }
    }

    /// Attempts started so far (the first included).
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Attempts that may still be started.
    pub const fn attempts_left(&self) -> u32 {
        self.policy.attempts_max - self.attempts
    }

    /// Decides what follows a failed attempt of class `class` under `table`.
    ///
    /// Usage and cancelled failures abort; a [`Recovery::Retry`] with attempts left answers
    /// [`Decision::RetryAfter`] (and counts the next attempt as started), and with none left
    /// falls back: the retries are spent, so the step is handled like any other failure that
    /// it cannot fix itself.
    pub fn on_failure(
        &mut self,
        class: ErrorClass,
        table: &RecoveryTable,
        rng: &mut Rng,
    ) -> Decision {
        debug_assert!(self.attempts >= 1 && self.attempts <= self.policy.attempts_max);
        let recovery = match table.lookup(class) {
            Ok(recovery) => recovery,
            Err(_) => return Decision::Abort,
        };
        match recovery {
            Recovery::Retry if self.attempts_left() > 0 => {
                let delay_ticks =
                    self.policy
                        .backoff
                        .delay_ticks(self.attempts, self.delay_prev_ticks, rng);
                self.delay_prev_ticks = delay_ticks;
                self.attempts += 1;
                Decision::RetryAfter(delay_ticks)
            }
            Recovery::Retry | Recovery::Fallback => Decision::Fallback,
            Recovery::Skip => Decision::Skip,
            Recovery::Fail => Decision::Fail,
        }
    }
}
