//! The setups every time-dependent behaviour is tested under: each preset at each telemetry
//! level, on the real clock and on a `ManualClock` (`#[path]`-included by the tests that use
//! it).
#![allow(dead_code)]

use std::thread;
use std::time::Duration;

use flujo_core::graph::ManualClock;
use flujo_runtime::clock::{ticks, RuntimeClock};
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::Executor;

/// The time a setup runs on.
#[derive(Clone, Debug)]
pub enum Time {
    /// The monotonic clock: a step that takes `d` sleeps `d`.
    Real,
    /// A manual clock: a step that takes `d` advances it by `d`.
    Manual(ManualClock),
}

impl Time {
    pub fn clock(&self) -> RuntimeClock {
        match self {
            Time::Real => RuntimeClock::default(),
            Time::Manual(c) => c.clone().into(),
        }
    }

    /// Lets `d` pass (in a step or between runs).
    pub fn pass(&self, d: Duration) {
        match self {
            Time::Real => thread::sleep(d),
            Time::Manual(c) => c.advance(ticks(d)),
        }
    }
}

/// One setup: a preset at one telemetry level, on one clock.
#[derive(Clone, Debug)]
pub struct Setup {
    pub name: String,
    pub cfg: OptimizationConfig,
    pub time: Time,
}

impl Setup {
    pub fn executor<P, C>(&self) -> Executor<P, C>
    where
        P: Clone + Send + Sync + 'static,
        C: flujo_core::context::Context + Send + Sync + 'static,
    {
        Executor::builder(self.cfg.clone())
            .clock(self.time.clock())
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

/// Every preset at every telemetry level, on the real clock and on a manual one. The preset's
/// sampling period is kept (the latency preset samples one run in 64).
pub fn setups(workers: usize) -> Vec<Setup> {
    let levels = [
        TelemetryLevel::Off,
        TelemetryLevel::Counters,
        TelemetryLevel::Histograms,
        TelemetryLevel::Events,
    ];
    let mut all = Vec::new();
    for preset in OptimizationConfig::PRESETS {
        for level in levels {
            for manual in [false, true] {
                let mut cfg = OptimizationConfig::preset(preset).unwrap();
                cfg.telemetry.level = level;
                cfg.workers = workers;
                let time = if manual {
                    Time::Manual(ManualClock::new(0))
                } else {
                    Time::Real
                };
                let clock = if manual { "manual" } else { "real" };
                let name = format!("{preset}/{level:?}/{clock} clock");
                all.push(Setup { name, cfg, time });
            }
        }
    }
    assert_eq!(all.len(), 3 * 4 * 2);
    all
}

/// Every preset at every telemetry level, clock left to the test: `(name, config)`.
pub fn presets_at_levels() -> Vec<(String, OptimizationConfig)> {
    let mut all = Vec::new();
    for preset in OptimizationConfig::PRESETS {
        for level in [
            TelemetryLevel::Off,
            TelemetryLevel::Counters,
            TelemetryLevel::Histograms,
            TelemetryLevel::Events,
        ] {
            let mut cfg = OptimizationConfig::preset(preset).unwrap();
            cfg.telemetry.level = level;
            all.push((format!("{preset}/{level:?}"), cfg));
        }
    }
    all
}

/// Runs `check` on every setup, each on a thread of its own.
pub fn each_setup(workers: usize, check: impl Fn(&Setup) + Sync) {
    let all = setups(workers);
    thread::scope(|s| {
        for setup in &all {
            let check = &check;
            thread::Builder::new()
                .name(setup.name.clone())
                .spawn_scoped(s, move || check(setup))
                .expect("a thread");
        }
    });
}
