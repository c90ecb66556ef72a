//! Circuit breakers shared by name: one per step, or one per named group of steps (say, every
//! call to one remote service), shared by every run of every graph that takes it.
//!
//! A breaker is the core's atomic [`Breaker`]; the registry only hands out the same `Arc` for
//! the same name, so a graph built later (or another graph) guards its steps with the breaker
//! earlier runs taught.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use flujo_core::policy::{Breaker, BreakerConfig};
use flujo_core::policy::{BreakerConfigError, BreakerState, TransitionCounts};

/// The core's [`BreakerConfig::DEFAULT`] rules in the runtime's nanosecond ticks: opens after
/// 5 failures in a row or at 50% failures over the last 100 calls (once 20 were seen), stays
/// open for 30 s, 3 probes of which 2 must succeed to close it.
pub const DEFAULT_CONFIG: BreakerConfig = BreakerConfig {
    open_ticks: 30_000_000_000,
    ..BreakerConfig::DEFAULT
};

/// Why the registry could not hand out a breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerError {
    /// The configuration is invalid (the field is named).
    Config(BreakerConfigError),
    /// A breaker of this name exists with another configuration.
    Mismatch {
        /// The name.
        name: String,
    },
    /// The registry holds its maximum number of breakers.
    Full {
        /// The bound.
        max: usize,
    },
}

impl fmt::Display for BreakerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Config(e) => write!(f, "invalid breaker configuration: {e:?}"),
            BreakerError::Mismatch { name } => {
                write!(f, "breaker `{name}` exists with another configuration")
            }
            BreakerError::Full { max } => write!(f, "the registry holds its {max} breakers"),
        }
    }
}

impl std::error::Error for BreakerError {}

/// One breaker's state and transitions, as [`BreakerRegistry::snapshot`] reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerReading {
    /// Its name.
    pub name: String,
    /// Its state now.
    pub state: BreakerState,
    /// Transitions made so far (exact).
    pub transitions: TransitionCounts,
}

/// Breakers by name, at most `max` of them.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use flujo_runtime::breakers::{BreakerRegistry, DEFAULT_CONFIG};
///
/// let registry = BreakerRegistry::new(16);
/// let a = registry.get_or_create("payments", DEFAULT_CONFIG).unwrap();
/// let b = registry.get_or_create("payments", DEFAULT_CONFIG).unwrap();
/// assert!(Arc::ptr_eq(&a, &b), "one breaker per name");
/// assert_eq!(registry.snapshot().len(), 1);
/// ```
#[derive(Debug)]
pub struct BreakerRegistry {
    by_name: Mutex<BTreeMap<String, Arc<Breaker>>>,
    max: usize,
}

impl BreakerRegistry {
    /// An empty registry holding at most `max` breakers.
    pub fn new(max: usize) -> Self {
        Self {
            by_name: Mutex::new(BTreeMap::new()),
            max,
        }
    }

    /// The breaker named `name`, made with `config` on first use. Asking again with another
    /// configuration is an error (two steps meant to share a breaker would not).
    pub fn get_or_create(
        &self,
        name: &str,
        config: BreakerConfig,
    ) -> Result<Arc<Breaker>, BreakerError> {
        let mut map = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = map.get(name) {
            return if *b.config() == config {
                Ok(Arc::clone(b))
            } else {
                Err(BreakerError::Mismatch {
                    name: name.to_string(),
                })
            };
        }
        if map.len() >= self.max {
            return Err(BreakerError::Full { max: self.max });
        }
        let b = Arc::new(Breaker::new(config).map_err(BreakerError::Config)?);
        map.insert(name.to_string(), Arc::clone(&b));
        Ok(b)
    }

    /// The breaker named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Breaker>> {
        let map = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(name).cloned()
    }

    /// Every breaker's state and exact transition counts, by name.
    pub fn snapshot(&self) -> Vec<BreakerReading> {
        let map = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(name, b)| BreakerReading {
                name: name.clone(),
                state: b.state(),
                transitions: b.transition_counts(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flujo_core::policy::CallOutcome;

    #[test]
    fn one_breaker_per_name_learns_from_every_user() {
        let r = BreakerRegistry::new(2);
        let config = BreakerConfig {
            consecutive_failures_to_open: 2,
            ..BreakerConfig::DEFAULT
        };
        let (a, b) = (
            r.get_or_create("svc", config).unwrap(),
            r.get_or_create("svc", config).unwrap(),
        );
        for user in [&a, &b] {
            let permit = user.try_acquire(0).unwrap();
            user.record(permit, CallOutcome::Failure, 0, 0);
        }
        assert_eq!(r.get("svc").unwrap().state(), BreakerState::Open);
        let reading = &r.snapshot()[0];
        assert_eq!(
            (reading.name.as_str(), reading.state),
            ("svc", BreakerState::Open)
        );
        assert_eq!(reading.transitions.closed_to_open, 1);
    }

    #[test]
    fn mismatched_configs_a_full_registry_and_bad_configs_are_refused() {
        let r = BreakerRegistry::new(1);
        r.get_or_create("a", BreakerConfig::DEFAULT).unwrap();
        let other = BreakerConfig {
            open_ticks: 7,
            ..BreakerConfig::DEFAULT
        };
        assert_eq!(
            r.get_or_create("a", other).unwrap_err(),
            BreakerError::Mismatch { name: "a".into() }
        );
        assert_eq!(
            r.get_or_create("b", BreakerConfig::DEFAULT).unwrap_err(),
            BreakerError::Full { max: 1 }
        );
        let bad = BreakerConfig {
            window_calls: 0,
            ..BreakerConfig::DEFAULT
        };
        assert!(matches!(
            BreakerRegistry::new(4).get_or_create("c", bad),
            Err(BreakerError::Config(_))
        ));
        assert!(r.get("b").is_none());
    }
}
