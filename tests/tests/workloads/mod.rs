//! The W1 and W2 graphs of BENCHMARKS.md, shared by the allocation tests (the benches crate
//! has its own copy: tests must not depend on it).
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;

use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_core::policy::{Breaker, BreakerConfig};

/// Tasks in the W1 and W2 chains.
pub const CHAIN: u64 = 100;

/// W1: a sequence of 100 plain `x + 1` tasks.
pub fn w1() -> Graph<u64, ()> {
    Graph::build(|b| {
        let steps: Vec<_> = (0..CHAIN)
            .map(|i| b.task(&format!("s{i}"), |x, _| Ok(x + 1)))
            .collect();
        b.sequence("W1", &steps)
    })
    .unwrap()
}

/// W2: W1 with retry (3 attempts, none needed), a validator and one shared circuit breaker
/// on every task.
pub fn w2() -> Graph<u64, ()> {
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 5,
            open_ticks: 100,
            ..BreakerConfig::DEFAULT
        })
        .unwrap(),
    );
    Graph::build(|b| {
        let steps: Vec<_> = (0..CHAIN)
            .map(|i| {
                let cfg = TaskConfig::new()
                    .retry(RetryPolicy::new(3, Backoff::Constant { delay_ticks: 1 }).unwrap())
                    .validate(|x: &u64, _| {
                        if *x > 0 {
                            Ok(())
                        } else {
                            Err(StepError::validation("zero"))
                        }
                    })
                    .breaker(breaker.clone());
                b.task_with(&format!("s{i}"), |x, _| Ok(x + 1), cfg)
            })
            .collect();
        b.sequence("W2", &steps)
    })
    .unwrap()
}
