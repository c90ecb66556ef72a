//! The circuit breaker against a plain sequential model of the same rules (a `VecDeque` window,
//! a period counter, no atomics).
//!
//! Program format: the first 9 bytes choose the configuration and the start time (see
//! `config` and `start_ticks`: small windows and thresholds mostly, sometimes a window of up
//! to 256 calls, open periods from 0 to `u64::MAX`, a start near `2^32` or `u64::MAX`). Each
//! following byte is an operation (`byte % 8`), most of which read one more byte as their
//! argument:
//!
//! | op | operation | checked against the model |
//! |----|-----------|---------------------------|
//! | 0, 1 | `try_acquire(now)`, the permit held (at most 16; the oldest is released first) | granted or the refusing state; probe or not |
//! | 2 | record held permit `arg` as a success, latency `next % 8` | the transition caused |
//! | 3 | record held permit `arg` as a failure | the transition caused |
//! | 4 | release held permit `arg` | - |
//! | 5 | advance the clock by `arg % 16` | - |
//! | 6 | advance the clock by `2^(arg % 64)` (saturating) | - |
//! | 7 | acquire and record at once, failure if `arg` is odd, latency `arg / 2 % 8` | both |
//!
//! After every operation the state and the transition counts equal the model's, and the
//! breaker's clean bit is set exactly when the model is closed with no streak and a full
//! window of successes.

use super::Bytes;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::policy::{
    Breaker, BreakerConfig, BreakerState, CallOutcome, Permit, Rejected, Transition,
    TransitionCounts,
};

/// The most permits a program holds at once.
const HELD_MAX: usize = 16;

/// The sequential model of the breaker's rules.
#[derive(Debug)]
struct Model {
    config: BreakerConfig,
    state: BreakerState,
    /// +1 on every transition; a permit of another period is ignored.
    period: u64,
    deadline: u64,
    streak: u32,
    /// The outcomes of the last `window_calls` closed calls, `true` = failure.
    window: VecDeque<bool>,
    probes: u32,
    successes: u32,
    counts: TransitionCounts,
}

/// A model permit: its period, and whether it is a probe.
#[derive(Clone, Copy, Debug)]
struct ModelPermit {
    period: u64,
    probe: bool,
}

impl Model {
    fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            period: 0,
            deadline: 0,
            streak: 0,
            window: VecDeque::new(),
            probes: 0,
            successes: 0,
            counts: TransitionCounts::default(),
        }
    }

    fn enter(&mut self, to: BreakerState) -> (BreakerState, BreakerState) {
        let from = self.state;
        let count = match (from, to) {
            (BreakerState::Closed, BreakerState::Open) => &mut self.counts.closed_to_open,
            (BreakerState::Open, BreakerState::HalfOpen) => &mut self.counts.open_to_half_open,
            (BreakerState::HalfOpen, BreakerState::Closed) => &mut self.counts.half_open_to_closed,
            (BreakerState::HalfOpen, BreakerState::Open) => &mut self.counts.half_open_to_open,
            _ => panic!("model makes an illegal transition {from:?} -> {to:?}"),
        };
        *count += 1;
        self.state = to;
        self.period += 1;
        self.probes = 0;
        self.successes = 0;
        (from, to)
    }

    fn open(&mut self, now: u64) -> (BreakerState, BreakerState) {
        self.deadline = now.saturating_add(self.config.open_ticks);
        self.streak = 0;
        self.window.clear();
        self.enter(BreakerState::Open)
    }

    fn acquire(&mut self, now: u64) -> Result<ModelPermit, BreakerState> {
        match self.state {
            BreakerState::Closed => Ok(ModelPermit {
                period: self.period,
                probe: false,
            }),
            BreakerState::Open if now >= self.deadline => {
                self.enter(BreakerState::HalfOpen);
                self.probes = 1;
                Ok(ModelPermit {
                    period: self.period,
                    probe: true,
                })
            }
            BreakerState::Open => Err(BreakerState::Open),
            BreakerState::HalfOpen if self.probes < self.config.half_open_probes_max => {
                self.probes += 1;
                Ok(ModelPermit {
                    period: self.period,
                    probe: true,
                })
            }
            BreakerState::HalfOpen => Err(BreakerState::HalfOpen),
        }
    }

    fn record(
        &mut self,
        permit: ModelPermit,
        outcome: CallOutcome,
        latency_ticks: u64,
        now: u64,
    ) -> Option<(BreakerState, BreakerState)> {
        if permit.period != self.period {
            return None;
        }
        let slow = self.config.slow_call_ticks;
        let failed = outcome == CallOutcome::Failure || (slow != 0 && latency_ticks >= slow);
        if permit.probe {
            assert_eq!(self.state, BreakerState::HalfOpen);
            if failed {
                return Some(self.open(now));
            }
            self.successes += 1;
            if self.successes >= self.config.half_open_successes_to_close {
                return Some(self.enter(BreakerState::Closed));
            }
            return None;
        }
        assert_eq!(self.state, BreakerState::Closed);
        self.window.push_back(failed);
        if self.window.len() > self.config.window_calls as usize {
            self.window.pop_front();
        }
        if !failed {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let calls = self.window.len() as u64;
        let failures = self.window.iter().filter(|f| **f).count() as u64;
        let streak_max = self.config.consecutive_failures_to_open;
        let rate = u64::from(self.config.failure_rate_percent_to_open);
        let by_streak = streak_max != 0 && self.streak >= streak_max;
        let by_rate = rate != 0
            && calls >= u64::from(self.config.window_calls_min)
            && failures * 100 >= rate * calls;
        (by_streak || by_rate).then(|| self.open(now))
    }

    fn release(&mut self, permit: ModelPermit) {
        if permit.probe && permit.period == self.period {
            assert!(self.probes >= 1);
            self.probes -= 1;
        }
    }
}

/// The configuration chosen by the program's first 8 bytes (always valid).
fn config(bytes: &mut Bytes<'_>) -> BreakerConfig {
    let b: [u8; 8] = core::array::from_fn(|_| bytes.next());
    let window_calls = if b[1] < 200 {
        1 + u32::from(b[1]) % 8
    } else {
        36 + (u32::from(b[1]) - 200) * 4
    };
    let probes = 1 + u32::from(b[6]) % 4;
    BreakerConfig {
        consecutive_failures_to_open: u32::from(b[0]) % 5,
        window_calls,
        failure_rate_percent_to_open: if b[2].is_multiple_of(3) {
            0
        } else {
            u32::from(b[2]) % 101
        },
        window_calls_min: 1 + u32::from(b[3]) % window_calls,
        slow_call_ticks: u64::from(b[4] % 6),
        open_ticks: match b[5] % 5 {
            0 => 0,
            1 => 1 + u64::from(b[5] / 5 % 5),
            2 => 10,
            3 => u64::MAX / 2,
            _ => u64::MAX,
        },
        half_open_probes_max: probes,
        half_open_successes_to_close: 1 + u32::from(b[7]) % probes,
    }
}

/// The start time chosen by the program's ninth byte.
fn start_ticks(bytes: &mut Bytes<'_>) -> u64 {
    match bytes.next() % 3 {
        0 => 0,
        1 => (1 << 32) - 10,
        _ => u64::MAX - 20,
    }
}

/// The breaker under test, the model, and the permits held by both.
struct Program {
    breaker: Breaker,
    model: Model,
    held: Vec<(Permit, ModelPermit)>,
    now: u64,
    /// Acquires the model refused.
    refused: usize,
}

impl Program {
    fn acquire(&mut self) -> Option<(Permit, ModelPermit)> {
        let got = self.breaker.try_acquire(self.now);
        let expected = self.model.acquire(self.now);
        match (got, expected) {
            (Ok(permit), Ok(model)) => {
                assert_eq!(permit.is_probe(), model.probe, "probe at {}", self.now);
                Some((permit, model))
            }
            (Err(Rejected { state }), Err(model)) => {
                assert_eq!(state, model, "refusing state at {}", self.now);
                self.refused += 1;
                None
            }
            (got, expected) => panic!("acquire at {}: {got:?}, model {expected:?}", self.now),
        }
    }

    fn record(
        &mut self,
        (permit, model): (Permit, ModelPermit),
        outcome: CallOutcome,
        latency: u64,
    ) {
        let got = self.breaker.record(permit, outcome, latency, self.now);
        let expected = self.model.record(model, outcome, latency, self.now);
        let got = got.map(|t: Transition| (t.from(), t.to()));
        assert_eq!(got, expected, "{outcome:?} after {latency} at {}", self.now);
    }

    fn take(&mut self, arg: u8) -> Option<(Permit, ModelPermit)> {
        if self.held.is_empty() {
            return None;
        }
        Some(self.held.swap_remove(usize::from(arg) % self.held.len()))
    }

    fn release(&mut self, (permit, model): (Permit, ModelPermit)) {
        self.breaker.release(permit);
        self.model.release(model);
    }

    fn step(&mut self, op: u8, bytes: &mut Bytes<'_>) {
        match op % 8 {
            0 | 1 => {
                if self.held.len() == HELD_MAX {
                    let oldest = self.held.remove(0);
                    self.release(oldest);
                }
                if let Some(pair) = self.acquire() {
                    self.held.push(pair);
                }
            }
            2 => {
                let arg = bytes.next();
                let latency = u64::from(bytes.next() % 8);
                if let Some(pair) = self.take(arg) {
                    self.record(pair, CallOutcome::Success, latency);
                }
            }
            3 => {
                let arg = bytes.next();
                if let Some(pair) = self.take(arg) {
                    self.record(pair, CallOutcome::Failure, 0);
                }
            }
            4 => {
                let arg = bytes.next();
                if let Some(pair) = self.take(arg) {
                    self.release(pair);
                }
            }
            5 => self.now = self.now.saturating_add(u64::from(bytes.next() % 16)),
            6 => self.now = self.now.saturating_add(1 << (bytes.next() % 64)),
            _ => {
                let arg = bytes.next();
                if let Some(pair) = self.acquire() {
                    let outcome = if arg % 2 == 1 {
                        CallOutcome::Failure
                    } else {
                        CallOutcome::Success
                    };
                    self.record(pair, outcome, u64::from(arg / 2 % 8));
                }
            }
        }
        assert_eq!(
            self.breaker.state(),
            self.model.state,
            "state at {}",
            self.now
        );
        assert_eq!(self.breaker.transition_counts(), self.model.counts);
        assert_eq!(
            self.breaker.refusals(),
            self.refused,
            "every refusal counted"
        );
    }
}

/// Runs `data` as an operation program against the breaker and its model.
pub fn run(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let config = config(&mut bytes);
    let now = start_ticks(&mut bytes);
    let breaker = Breaker::new(config).expect("the decoded configuration is valid");
    let mut program = Program {
        breaker,
        model: Model::new(config),
        held: Vec::new(),
        now,
        refused: 0,
    };
    while !bytes.data.is_empty() {
        let op = bytes.next();
        program.step(op, &mut bytes);
        let (count, bits) = program.breaker.failure_counts();
        assert_eq!(count, bits, "the failure count is the window's set bits");
        let model = &program.model;
        let healthy = model.state == BreakerState::Closed
            && model.streak == 0
            && model.window.len() == model.config.window_calls as usize
            && !model.window.contains(&true);
        assert_eq!(
            program.breaker.clean(),
            (healthy, healthy),
            "the clean bit says exactly whether a success would change nothing"
        );
    }
    let held = core::mem::take(&mut program.held);
    for pair in held {
        program.release(pair);
    }
}
