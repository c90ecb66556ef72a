//! Task policies as pure state machines: error classes and recovery tables, retries with
//! bounded backoff, a shared circuit breaker, and usage budgets.
//!
//! **Architecture invariant:** no policy reads a clock or an entropy source. Time comes in as
//! ticks (`u64`, the caller's unit) passed to each call, and randomness from a seeded [`Rng`],
//! so every decision is reproducible from its inputs and the whole module is `no_std`.
//!
//! The interpreter applies them in the order of the design brief: breaker
//! ([`Breaker::try_acquire`]), cache, usage ([`UsageBudget::reserve`]), attempts with
//! [`RetryState::on_failure`] deciding after each failure through the step's
//! [`RecoveryTable`], fallback, then the outcome goes to [`Breaker::record`] and the
//! actual usage to [`UsageBudget::reconcile`].

pub(crate) mod breaker;
pub(crate) mod error;
pub(crate) mod retry;
pub(crate) mod rng;
pub(crate) mod usage;

#[cfg(all(test, loom))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

pub use breaker::{
    Breaker, BreakerConfig, BreakerConfigError, BreakerState, CallOutcome, IllegalTransition,
    Permit, Rejected, Transition, TransitionCounts, BREAKER_PROBES_MAX, BREAKER_WINDOW_CALLS_MAX,
};
pub use error::{Abort, ErrorClass, Recovery, RecoveryTable};
pub use retry::{Backoff, Decision, RetryPolicy, RetryPolicyError, RetryState, ATTEMPTS_MAX};
pub use rng::Rng;
pub use usage::{Reservation, Split, Usage, UsageBudget, UsageDenied, UsageLimit};
