//! Retry backoff under the runtime (issue 16): every gap between two attempts of a step is at
//! least the backoff the retry policy chose for it, so nothing skips a wait to look fast.
//! This holds whether the wait sleeps (today) or runs other queued runs meanwhile
//! (help-while-waiting, `docs/waiting.md`: a helped job may make a gap longer, never
//! shorter).
//!
//! A *flaky* step fails its first `fails` attempts with a transient error and notes the
//! executor's clock (`ex.clock().now()`) as each attempt starts; the gap before retry `i` is
//! the time between attempts `i` and `i + 1`. Three schedules: constant, exponential (each
//! delay known in advance), and decorrelated jitter (each delay drawn: an inline run's step
//! record gives the total chosen, `backoff_ticks`). Checked for inline runs (`Executor::run_with`)
//! and submitted runs (`submit_with`, then the ticket's `wait`), alone and with other runs
//! queued on the one worker, including more runs backing off at once than help-while-waiting
//! may nest.
//!
//! Every preset at every telemetry level, on the real clock and on a `ManualClock`. On the
//! manual clock nothing but a backoff moves time here (the steps do not), and a backoff
//! moves it by exactly its ticks: that is asserted too.

#[path = "common/matrix.rs"]
mod matrix;

use matrix::{each_setup, Setup, Time};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flujo_core::graph::{Clock, Graph, StepError, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_core::telemetry::Counter;
use flujo_runtime::{Completed, Executor, Finished, Priority, RunSpec, SubmitSpec};

/// One millisecond in the runtime's ticks.
const MS: u64 = 1_000_000;

/// A retry schedule under test: its backoff and how many attempts fail first.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    backoff: Backoff,
    fails: u32,
}

/// The schedules: constant, exponential (capped on its last retry) and decorrelated jitter,
/// with one retry (so an inline run's record names the one delay chosen) and with three.
const CASES: [Case; 4] = [
    Case {
        name: "constant",
        backoff: Backoff::Constant {
            delay_ticks: 2 * MS,
        },
        fails: 2,
    },
    Case {
        name: "exponential",
        backoff: Backoff::Exponential {
            base_ticks: MS,
            factor: 2,
            delay_ticks_max: 3 * MS,
        },
        fails: 3,
    },
    Case {
        name: "jitter, one retry",
        backoff: Backoff::DecorrelatedJitter {
            base_ticks: MS,
            delay_ticks_max: 4 * MS,
        },
        fails: 1,
    },
    Case {
        name: "jitter, three retries",
        backoff: Backoff::DecorrelatedJitter {
            base_ticks: MS,
            delay_ticks_max: 4 * MS,
        },
        fails: 3,
    },
];

impl Case {
    /// The policy: exactly enough attempts for the step to succeed.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.fails + 1, self.backoff).expect("a valid retry policy")
    }

    /// The delay before retry `retry` (1 = the first) when the schedule fixes it (no jitter).
    fn delay_known(&self, retry: u32) -> Option<u64> {
        match self.backoff {
            Backoff::Constant { delay_ticks } => Some(delay_ticks),
            Backoff::Exponential {
                base_ticks,
                factor,
                delay_ticks_max,
            } => Some(
                base_ticks
                    .saturating_mul(u64::from(factor).saturating_pow(retry - 1))
                    .min(delay_ticks_max),
            ),
            Backoff::DecorrelatedJitter { .. } => None,
        }
    }

    /// The least delay the schedule can choose before any retry.
    fn delay_min(&self, retry: u32) -> u64 {
        match self.backoff {
            Backoff::DecorrelatedJitter { base_ticks, .. } => base_ticks,
            _ => self.delay_known(retry).expect("known without jitter"),
        }
    }

    /// The total the schedule chooses over every retry, when it fixes it.
    fn total_known(&self) -> Option<u64> {
        (1..=self.fails).map(|r| self.delay_known(r)).sum()
    }
}

/// The attempts flaky steps made: `(run key, attempt, tick at its start)`.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<(u64, u32, u64)>>>);

impl Attempts {
    fn note(&self, key: u64, attempt: u32, tick: u64) {
        self.0.lock().unwrap().push((key, attempt, tick));
    }

    /// The start ticks of run `key`'s attempts, in attempt order (checked: 1, 2, ...).
    fn of(&self, key: u64) -> Vec<u64> {
        let mut mine: Vec<(u32, u64)> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|&(_, attempt, tick)| (attempt, tick))
            .collect();
        mine.sort_unstable();
        let attempts: Vec<u32> = mine.iter().map(|&(a, _)| a).collect();
        let want: Vec<u32> = (1..=attempts.len() as u32).collect();
        assert_eq!(attempts, want, "run {key}: each attempt noted once");
        mine.into_iter().map(|(_, tick)| tick).collect()
    }

    /// The gaps between run `key`'s attempts (retry 1's first).
    fn gaps(&self, key: u64) -> Vec<u64> {
        let t = self.of(key);
        t.windows(2)
            .map(|w| {
                assert!(w[1] >= w[0], "run {key}: attempts in clock order: {t:?}");
                w[1] - w[0]
            })
            .collect()
    }
}

/// A run of `flaky` then `next` (`x + 1` each): `flaky` notes its attempts under its input
/// (the run's key) and fails the first `case.fails` of them with a transient error.
fn flaky_graph(ex: &Executor<u64, ()>, attempts: &Attempts, case: &Case) -> Arc<Graph<u64, ()>> {
    let (clock, attempts, fails) = (ex.clock().clone(), attempts.clone(), case.fails);
    let cfg = TaskConfig::new().retry(case.policy());
    let g = Graph::build(move |b| {
        let flaky = b.task_with(
            "flaky",
            move |x: u64, cx| {
                attempts.note(x, cx.attempt(), clock.now());
                if cx.attempt() <= fails {
                    Err(StepError::transient("flaky: not yet"))
                } else {
                    Ok(x + 1)
                }
            },
            cfg,
        );
        let next = b.task("next", |x: u64, _| Ok(x + 1));
        b.sequence("flaky-then-next", &[flaky, next])
    })
    .expect("a valid graph");
    Arc::new(g)
}

/// A healthy run: a chain of 20 `x + 1` tasks, none with a policy.
fn healthy_graph() -> Arc<Graph<u64, ()>> {
    let g = Graph::build(|b| {
        let steps: Vec<_> = (0..20)
            .map(|i| b.task(&format!("h{i}"), |x: u64, _| Ok(x + 1)))
            .collect();
        b.sequence("healthy", &steps)
    })
    .expect("a valid graph");
    Arc::new(g)
}

/// Whether the setup runs on a manual clock.
fn manual(s: &Setup) -> bool {
    matches!(s.time, Time::Manual(_))
}

/// Checks run `key`'s gaps against `case`: each at least the least delay its schedule can
/// choose (the delay itself when the schedule fixes it); all of them together at least
/// `chosen_total`, the total the run's record says was chosen (inline runs). With `exact`
/// (a manual clock, and no other run backing off meanwhile) each gap *is* its backoff: the
/// schedule's delay, or for jitter a delay the schedule allows.
fn check_gaps(who: &str, case: &Case, gaps: &[u64], chosen_total: Option<u64>, exact: bool) -> u64 {
    assert_eq!(gaps.len(), case.fails as usize, "{who}: one gap per retry");
    for (i, &gap) in gaps.iter().enumerate() {
        let retry = i as u32 + 1;
        let least = case.delay_min(retry);
        assert!(
            gap >= least,
            "{who}: retry {retry}: gap {gap} ns is under the backoff {least} ns"
        );
    }
    let sum: u64 = gaps.iter().sum();
    if let Some(chosen) = chosen_total {
        assert!(
            sum >= chosen,
            "{who}: the gaps ({gaps:?} ns) are under the backoff chosen ({chosen} ns)"
        );
        if let Some(known) = case.total_known() {
            assert_eq!(
                chosen, known,
                "{who}: the record's backoff is the schedule's"
            );
        }
        if exact {
            assert_eq!(sum, chosen, "{who}: a backoff moves the clock by its ticks");
        }
    }
    if exact {
        match case.backoff {
            Backoff::DecorrelatedJitter {
                base_ticks,
                delay_ticks_max,
            } => {
                let mut prev = base_ticks;
                for &gap in gaps {
                    let high = prev.saturating_mul(3).min(delay_ticks_max);
                    assert!(
                        (base_ticks..=high).contains(&gap),
                        "{who}: jitter gap {gap} ns outside {base_ticks}..={high}"
                    );
                    prev = gap;
                }
            }
            _ => {
                let want: Vec<u64> = (1..=case.fails)
                    .map(|r| case.delay_known(r).expect("known"))
                    .collect();
                assert_eq!(
                    gaps, want,
                    "{who}: each backoff moves the clock by its ticks"
                );
            }
        }
    }
    sum
}

/// What a run of the flaky graph on input `x` must end with.
fn check_done(who: &str, case: &Case, x: u64, done: &Completed<u64, ()>) {
    assert_eq!(
        (done.outcome, done.output),
        (Outcome::Succeeded, Some(x + 2)),
        "{who}"
    );
    assert_eq!(
        done.counters.get(Counter::Retries),
        u64::from(case.fails),
        "{who}: every retry counted"
    );
}

/// Waits for a submitted run.
fn ran(who: &str, finished: Finished<u64, ()>) -> Completed<u64, ()> {
    match finished {
        Finished::Ran(done) => done,
        other => panic!("{who}: {other:?}"),
    }
}

/// Room for every submission of these tests: wait for it rather than be refused (the
/// presets' admission limits start low).
fn patient(priority: Priority) -> SubmitSpec {
    SubmitSpec::default()
        .priority(priority)
        .wait(Duration::from_secs(60))
}

#[test]
fn every_retry_gap_of_an_inline_run_is_at_least_its_backoff() {
    each_setup(1, |s| {
        let ex: Executor<u64, ()> = s.executor();
        for case in &CASES {
            let attempts = Attempts::default();
            let g = flaky_graph(&ex, &attempts, case);
            for x in [0u64, 10, 20] {
                let who = format!("{}: {}: inline run {x}", s.name, case.name);
                let before = ex.clock().now();
                let (done, rec) = ex
                    .run_with(&g, x, (), &RunSpec::default(), |r| {
                        let rec = r
                            .records
                            .iter()
                            .find(|rec| rec.attempts == case.fails + 1)
                            .copied();
                        (Completed::from(r), rec)
                    })
                    .expect("no panic");
                let moved = ex.clock().now() - before;
                check_done(&who, case, x, &done);
                let rec = rec.unwrap_or_else(|| panic!("{who}: the flaky step's record"));
                // A run telemetry does not sample leaves the latency unmeasured (0); a
                // measured one includes the backoff.
                assert!(
                    rec.latency_ticks == 0 || rec.latency_ticks >= rec.backoff_ticks,
                    "{who}: the step's latency includes its backoff: {rec:?}"
                );
                let sum = check_gaps(
                    &who,
                    case,
                    &attempts.gaps(x),
                    Some(rec.backoff_ticks),
                    manual(s),
                );
                assert!(moved >= sum, "{who}: the run took its gaps");
                if manual(s) {
                    assert_eq!(
                        moved, rec.backoff_ticks,
                        "{who}: only the backoff moved the manual clock"
                    );
                }
            }
        }
    });
}

#[test]
fn every_retry_gap_of_a_submitted_run_is_at_least_its_backoff() {
    each_setup(1, |s| {
        let ex: Executor<u64, ()> = s.executor();
        for case in &CASES {
            let attempts = Attempts::default();
            let g = flaky_graph(&ex, &attempts, case);
            for (x, priority) in [
                (0u64, Priority::High),
                (10, Priority::Normal),
                (20, Priority::Low),
            ] {
                let who = format!(
                    "{}: {}: submitted run {x} ({priority:?})",
                    s.name, case.name
                );
                let before = ex.clock().now();
                let ticket = ex
                    .submit_with(&g, x, (), &patient(priority))
                    .unwrap_or_else(|r| panic!("{who}: refused: {}", r.reason));
                let done = ran(&who, ticket.wait().expect("the ticket completes"));
                let moved = ex.clock().now() - before;
                check_done(&who, case, x, &done);
                let sum = check_gaps(&who, case, &attempts.gaps(x), None, manual(s));
                assert!(moved >= sum, "{who}: the run took its gaps");
                if manual(s) {
                    assert_eq!(
                        moved, sum,
                        "{who}: only the backoffs moved the manual clock"
                    );
                }
            }
        }
    });
}

#[test]
fn a_run_backing_off_while_others_are_queued_still_waits_its_backoff() {
    // One worker: the flaky run is submitted first and backs off while 40 healthy runs wait
    // in the queues (High, Normal and Low: help-while-waiting takes only its own priority or
    // higher). However the worker spends the gaps, each is at least its backoff, and every
    // queued run ends with the right answer. An inline flaky run on the host's thread, made
    // while the queue is full, keeps its backoffs too.
    let healthy = healthy_graph();
    each_setup(1, |s| {
        let ex: Executor<u64, ()> = s.executor();
        for case in &CASES {
            let attempts = Attempts::default();
            let g = flaky_graph(&ex, &attempts, case);
            let who = format!("{}: {}: with 40 runs queued", s.name, case.name);
            let before = ex.clock().now();
            let flaky = ex
                .submit_with(&g, 0, (), &patient(Priority::High))
                .unwrap_or_else(|r| panic!("{who}: refused: {}", r.reason));
            let priorities = [
                Priority::High,
                Priority::Normal,
                Priority::High,
                Priority::Low,
            ];
            let queued: Vec<_> = (0..40u64)
                .map(|i| {
                    let spec = patient(priorities[i as usize % priorities.len()]);
                    let t = ex
                        .submit_with(&healthy, 1000 + i, (), &spec)
                        .unwrap_or_else(|r| panic!("{who}: healthy {i} refused: {}", r.reason));
                    (i, t)
                })
                .collect();
            // Inline, on this thread, while the worker has the queue.
            let (inline, inline_chosen) = ex
                .run_with(&g, 500, (), &RunSpec::default(), |r| {
                    let chosen: u64 = r.records.iter().map(|rec| rec.backoff_ticks).sum();
                    (Completed::from(r), chosen)
                })
                .expect("no panic");
            check_done(&format!("{who}: inline"), case, 500, &inline);
            let done = ran(&who, flaky.wait().expect("the ticket completes"));
            check_done(&who, case, 0, &done);
            for (i, t) in queued {
                let done = ran(&who, t.wait().expect("the ticket completes"));
                assert_eq!(done.output, Some(1000 + i + 20), "{who}: healthy run {i}");
            }
            let moved = ex.clock().now() - before;
            // The two flaky runs back off at once: neither's gaps may be cut short, but on
            // the manual clock each run's gaps may include the other's backoffs.
            check_gaps(&who, case, &attempts.gaps(0), None, false);
            let inline_who = format!("{who}: inline");
            check_gaps(
                &inline_who,
                case,
                &attempts.gaps(500),
                Some(inline_chosen),
                false,
            );
            if manual(s) {
                // Only the backoffs moved the manual clock, each by exactly its ticks.
                match case.total_known() {
                    Some(total) => assert_eq!(moved, 2 * total, "{who}"),
                    None => {
                        let submitted = moved - inline_chosen;
                        let least = u64::from(case.fails) * case.delay_min(1);
                        assert!(submitted >= least, "{who}: moved {moved}");
                    }
                }
            }
        }
    });
}

#[test]
fn many_runs_backing_off_among_queued_runs_each_wait_their_backoff() {
    // One worker, 60 High runs submitted at once, every sixth one flaky (10 of them: more
    // than help-while-waiting may nest, 4 levels): a run helped inside another's gap may
    // back off in turn. Each flaky run's gaps are still at least its backoffs, and on the
    // manual clock every backoff moved the clock by exactly its ticks (the clock moved by
    // the sum of all of them, constant schedules).
    let healthy = healthy_graph();
    let case = CASES[0];
    each_setup(1, |s| {
        let ex: Executor<u64, ()> = s.executor();
        let attempts = Attempts::default();
        let g = flaky_graph(&ex, &attempts, &case);
        let who = format!("{}: 60 runs, 10 flaky", s.name);
        let before = ex.clock().now();
        let tickets: Vec<_> = (0..60u64)
            .map(|i| {
                let graph = if i % 6 == 3 { &g } else { &healthy };
                let t = ex
                    .submit_with(graph, i * 100, (), &patient(Priority::High))
                    .unwrap_or_else(|r| panic!("{who}: run {i} refused: {}", r.reason));
                (i, t)
            })
            .collect();
        let mut gaps_total = 0;
        for (i, t) in tickets {
            let done = ran(&who, t.wait().expect("the ticket completes"));
            let x = i * 100;
            if i % 6 == 3 {
                let who = format!("{who}: flaky run {i}");
                check_done(&who, &case, x, &done);
                gaps_total += check_gaps(&who, &case, &attempts.gaps(x), None, false);
            } else {
                assert_eq!(done.output, Some(x + 20), "{who}: healthy run {i}");
            }
        }
        let moved = ex.clock().now() - before;
        let backoffs = 10 * case.total_known().expect("constant");
        if manual(s) {
            assert_eq!(
                moved, backoffs,
                "{who}: each backoff moved the clock by its ticks"
            );
            assert!(gaps_total >= backoffs, "{who}");
        } else {
            // On one worker the flaky runs' waits cannot overlap the sleeping of today, but
            // they may when the wait helps: only each gap's own bound holds in general.
            assert!(moved >= case.total_known().expect("constant"), "{who}");
        }
    });
}

#[test]
fn a_zero_backoff_retries_at_once_and_moves_no_manual_time() {
    // The other edge: `Backoff::NONE` waits nothing, and the manual clock does not move.
    let case = Case {
        name: "no backoff",
        backoff: Backoff::NONE,
        fails: 2,
    };
    each_setup(1, |s| {
        let ex: Executor<u64, ()> = s.executor();
        let attempts = Attempts::default();
        let g = flaky_graph(&ex, &attempts, &case);
        let who = format!("{}: no backoff", s.name);
        let before = ex.clock().now();
        let done = ex.run(&g, 7, ()).expect("no panic");
        check_done(&who, &case, 7, &done);
        check_gaps(&who, &case, &attempts.gaps(7), None, manual(s));
        if manual(s) {
            assert_eq!(ex.clock().now(), before, "{who}: nothing moved the clock");
        }
    });
}
