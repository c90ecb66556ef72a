//! Loom models of the dispatcher protocol ([`Dispatchers`]): submitters push jobs and start
//! dispatchers as `exec.rs` does, with a loom thread where the executor spawns a rayon job.
//! The one-place models run on the real [`PriorityQueues`], whose look (`is_empty`) is a load:
//! a queue behind a lock orders a look and a push by the lock, and would hide a protocol that
//! needs more. The two-place model, whose point is the bound with two dispatchers running at
//! once, runs on a loom `Mutex<VecDeque>`: on the real queues it takes minutes.
//!
//! Every model checks, in every interleaving up to the preemption bound: each job pushed is
//! run exactly once (none stranded, none twice), no more than `max` dispatchers are ever
//! between their start and their stop, and at the end no place is held and `QUEUED` is clear.
//! Each also checks, over all its interleavings, that it reached the path it is about.
//!
//! loom runs at most five threads (the main one included), which bounds the models: the main
//! thread is one of the submitters, and each model has at most three dispatchers.

use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize, Ordering as StdOrdering,
};
use std::sync::Mutex as StdMutex;

use loom::sync::{Arc, Mutex};
use loom::thread::{self, JoinHandle};

use super::{Dispatchers, Empty};
use crate::config::QueueConfig;
use crate::queue::PriorityQueues;
use crate::sync::NO_CPU;
use crate::Priority;

/// A builder that honours `LOOM_MAX_PREEMPTIONS` and bounds preemptions at 2 without it.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    builder
}

/// How a dispatcher runs (the two ways of `exec.rs`'s `dispatch_loop`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Pops until the queues are empty, then looks again, lingers (and then leaves or looks
    /// again) or leaves.
    Loop,
    /// One job, then stops: a dispatcher nested in a forked run's `join`, or one unwinding
    /// from a panic in its job (both end in `Dispatchers::stop`).
    OneJob,
}

/// The queue a model runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// The executor's: `PriorityQueues` (every job at `Normal`).
    Real,
    /// A loom `Mutex<VecDeque>`.
    Locked,
}

/// A model's queue.
enum Jobs {
    Real(PriorityQueues<usize>),
    Locked(Mutex<VecDeque<usize>>),
}

impl Jobs {
    fn new(queue: Queue) -> Self {
        match queue {
            Queue::Real => Jobs::Real(
                PriorityQueues::new(QueueConfig {
                    capacity: [4; 3],
                    aging: 0,
                })
                .unwrap(),
            ),
            Queue::Locked => Jobs::Locked(Mutex::new(VecDeque::new())),
        }
    }

    fn push(&self, job: usize) {
        match self {
            Jobs::Real(q) => q.push(job, Priority::Normal).unwrap(),
            Jobs::Locked(q) => q.lock().unwrap().push_back(job),
        }
    }

    fn pop(&self) -> Option<usize> {
        match self {
            Jobs::Real(q) => q.pop().map(|(job, _)| job),
            Jobs::Locked(q) => q.lock().unwrap().pop_front(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Jobs::Real(q) => q.is_empty(),
            Jobs::Locked(q) => q.lock().unwrap().is_empty(),
        }
    }
}

/// An executor reduced to its dispatchers: the queue, the protocol, and what the checks read.
struct Model {
    dispatchers: Dispatchers,
    queue: Jobs,
    /// How many times each job ran (bookkeeping outside the model: `std` types).
    runs: StdMutex<Vec<u32>>,
    /// Dispatchers between their start and their stop.
    inside: StdAtomicUsize,
    /// Every dispatcher thread started, joined at the end.
    threads: StdMutex<Vec<JoinHandle<()>>>,
    /// Leaves that found `QUEUED` set and looked again, and stops that handed their place on.
    looked_again: StdAtomicUsize,
    handed_on: StdAtomicUsize,
    /// Lingers that ended looking again (a submission came while they lingered), and
    /// dispatchers that left because another lingered.
    caught: StdAtomicUsize,
    left_to_lingerer: StdAtomicUsize,
    /// The most dispatchers between their start and their stop at once.
    peak: StdAtomicUsize,
    /// Whether the next dispatcher a submitter starts runs one job only (the first, in the
    /// models that ask for it; loom allows five threads, so the rest loop).
    one_job_next: StdAtomicBool,
}

impl Model {
    fn new(max: usize, jobs: usize, first: Mode, queue: Queue) -> Arc<Self> {
        Arc::new(Self {
            dispatchers: Dispatchers::new(max),
            queue: Jobs::new(queue),
            runs: StdMutex::new(vec![0; jobs]),
            inside: StdAtomicUsize::new(0),
            threads: StdMutex::new(Vec::new()),
            looked_again: StdAtomicUsize::new(0),
            handed_on: StdAtomicUsize::new(0),
            caught: StdAtomicUsize::new(0),
            left_to_lingerer: StdAtomicUsize::new(0),
            peak: StdAtomicUsize::new(0),
            one_job_next: StdAtomicBool::new(first == Mode::OneJob),
        })
    }

    /// `Executor::submit_with`'s push, then `kick`.
    fn submit(model: &Arc<Self>, job: usize) {
        model.queue.push(job);
        if model.dispatchers.submitted(NO_CPU) {
            let mode = if model.one_job_next.swap(false, StdOrdering::Relaxed) {
                Mode::OneJob
            } else {
                Mode::Loop
            };
            Self::start(model, mode);
        }
    }

    /// `pool.spawn(move || me.dispatch())`: a dispatcher holding a place.
    fn start(model: &Arc<Self>, mode: Mode) {
        let me = Arc::clone(model);
        let handle = thread::spawn(move || Self::dispatch(&me, mode));
        model.threads.lock().unwrap().push(handle);
    }

    /// `dispatch_loop`, entered holding a place.
    fn dispatch(model: &Arc<Self>, mode: Mode) {
        let inside = model.inside.fetch_add(1, StdOrdering::Relaxed) + 1;
        assert!(
            inside <= model.dispatchers.max(),
            "{inside} dispatchers at once"
        );
        model.peak.fetch_max(inside, StdOrdering::Relaxed);
        match mode {
            Mode::OneJob => {
                if let Some(job) = model.next_job() {
                    model.run(job);
                }
                // The model's dispatcher has ended before its successor starts.
                model.inside.fetch_sub(1, StdOrdering::Relaxed);
                if model.dispatchers.stop(|| model.queue.is_empty()) {
                    model.handed_on.fetch_add(1, StdOrdering::Relaxed);
                    Self::start(model, Mode::Loop);
                }
            }
            Mode::Loop => {
                loop {
                    while let Some(job) = model.next_job() {
                        model.run(job);
                    }
                    // As `dispatch_loop`: linger unless another does.
                    let left = match model.dispatchers.try_linger() {
                        Empty::LookAgain => false,
                        Empty::Left => {
                            model.left_to_lingerer.fetch_add(1, StdOrdering::Relaxed);
                            true
                        }
                        Empty::Linger => {
                            model.dispatchers.linger();
                            let left = model.dispatchers.end_linger();
                            if !left {
                                model.caught.fetch_add(1, StdOrdering::Relaxed);
                            }
                            left
                        }
                    };
                    if left {
                        break;
                    }
                    model.looked_again.fetch_add(1, StdOrdering::Relaxed);
                }
                model.inside.fetch_sub(1, StdOrdering::Relaxed);
            }
        }
    }

    /// `Inner::next_job`.
    fn next_job(&self) -> Option<usize> {
        loop {
            if let Some(job) = self.queue.pop() {
                return Some(job);
            }
            if self.queue.is_empty() {
                return None;
            }
            loom::thread::yield_now();
        }
    }

    fn run(&self, job: usize) {
        self.runs.lock().unwrap()[job] += 1;
    }

    /// Joins every dispatcher (those started while joining too), then checks the end state;
    /// returns how many leaves looked again, how many stops handed their place on, how many
    /// lingers caught a submission and how many dispatchers left to a lingering one.
    fn finish(&self) -> (usize, usize, usize, usize) {
        loop {
            let Some(handle) = self.threads.lock().unwrap().pop() else {
                break;
            };
            handle.join().unwrap();
        }
        assert!(
            self.runs.lock().unwrap().iter().all(|&n| n == 1),
            "each job runs exactly once: {:?}",
            self.runs.lock().unwrap()
        );
        assert!(self.queue.is_empty());
        assert_eq!(self.inside.load(StdOrdering::Relaxed), 0);
        // No place held, `QUEUED` and `LINGER` clear: the word is back at 0.
        assert_eq!(
            self.dispatchers
                .state
                .load(loom::sync::atomic::Ordering::Relaxed),
            0
        );
        (
            self.looked_again.load(StdOrdering::Relaxed),
            self.handed_on.load(StdOrdering::Relaxed),
            self.caught.load(StdOrdering::Relaxed),
            self.left_to_lingerer.load(StdOrdering::Relaxed),
        )
    }
}

/// What a model's interleavings did, summed over all of them.
#[derive(Debug, Default)]
struct Reached {
    iterations: StdAtomicUsize,
    looked_again: StdAtomicUsize,
    handed_on: StdAtomicUsize,
    caught: StdAtomicUsize,
    left_to_lingerer: StdAtomicUsize,
    /// The most dispatchers seen between their start and their stop at once.
    peak: StdAtomicUsize,
}

/// Checks a model of `max` places on `queue` (the first dispatcher started running as
/// `first`), the main thread submitting `main`'s jobs while a second thread submits `other`'s;
/// returns what the interleavings reached.
fn check(
    max: usize,
    first: Mode,
    queue: Queue,
    main: &'static [usize],
    other: &'static [usize],
) -> std::sync::Arc<Reached> {
    let reached = std::sync::Arc::new(Reached::default());
    let seen = std::sync::Arc::clone(&reached);
    builder().check(move || {
        let model = Model::new(max, main.len() + other.len(), first, queue);
        let second = {
            let model = Arc::clone(&model);
            thread::spawn(move || {
                for &job in other {
                    Model::submit(&model, job);
                }
            })
        };
        for &job in main {
            Model::submit(&model, job);
        }
        second.join().unwrap();
        let (looked_again, handed_on, caught, left_to_lingerer) = model.finish();
        seen.caught.fetch_add(caught, StdOrdering::Relaxed);
        seen.left_to_lingerer
            .fetch_add(left_to_lingerer, StdOrdering::Relaxed);
        seen.peak
            .fetch_max(model.peak.load(StdOrdering::Relaxed), StdOrdering::Relaxed);
        seen.iterations.fetch_add(1, StdOrdering::Relaxed);
        seen.looked_again
            .fetch_add(looked_again, StdOrdering::Relaxed);
        seen.handed_on.fetch_add(handed_on, StdOrdering::Relaxed);
    });
    assert!(reached.iterations.load(StdOrdering::Relaxed) > 1);
    reached
}

/// Two submitters (the model's main thread and one more), one place: the dispatcher the first
/// starts finds the queue empty, lingers and leaves while the second submission arrives (and
/// every other order). The second either finds the place free and starts its own dispatcher,
/// or sets `QUEUED` and the leaving one looks again (reached), or comes while the dispatcher
/// lingers and is left to it (caught, reached).
#[test]
fn loom_dispatch_two_submitters_one_place() {
    let reached = check(1, Mode::Loop, Queue::Real, &[0], &[1]);
    assert!(reached.looked_again.load(StdOrdering::Relaxed) > 0);
    assert!(reached.caught.load(StdOrdering::Relaxed) > 0);
}

/// One place, three jobs: while the dispatcher of the first runs, the second submitter's two
/// submissions find the place taken, the later one with `QUEUED` already set (its RMW writes
/// all the same: that write is what the leave reads).
#[test]
fn loom_dispatch_queued_already_set() {
    let reached = check(1, Mode::Loop, Queue::Real, &[0], &[1, 2]);
    assert!(reached.looked_again.load(StdOrdering::Relaxed) > 0);
}

/// Two places, two submitters: each may start a dispatcher, and the two run beside each other
/// (reached) or one after the other, or one runs both jobs; never more than two at once.
/// On the locked queue (see the module docs).
#[test]
fn loom_dispatch_two_places() {
    let reached = check(2, Mode::Loop, Queue::Locked, &[0], &[1]);
    assert_eq!(reached.peak.load(StdOrdering::Relaxed), 2);
}

/// Two places, three jobs (the main thread submits two): dispatchers start, leave and look
/// again (reached) beside each other, never more than two at once; a dispatcher that finds
/// the queue empty while the other lingers leaves (reached), and a submission that finds a
/// place free while one lingers leaves its job to it (caught, reached). On the locked queue.
#[test]
fn loom_dispatch_two_places_three_jobs() {
    let reached = check(2, Mode::Loop, Queue::Locked, &[0, 1], &[2]);
    assert!(reached.looked_again.load(StdOrdering::Relaxed) > 0);
    assert_eq!(reached.peak.load(StdOrdering::Relaxed), 2);
    assert!(reached.caught.load(StdOrdering::Relaxed) > 0);
    assert!(reached.left_to_lingerer.load(StdOrdering::Relaxed) > 0);
}

/// One place, two submitters, and the first dispatcher started runs one job only and stops
/// early (nested in a `join`, or unwinding from its job's panic: both end in
/// `Dispatchers::stop`): it hands its place to a fresh dispatcher when the queue is not empty
/// or `QUEUED` is set (reached), else gives it up, while the second submission arrives.
/// Nothing strands, and the place is never held by two at once.
#[test]
fn loom_dispatch_one_job_then_stop() {
    let reached = check(1, Mode::OneJob, Queue::Real, &[0], &[1]);
    assert!(reached.handed_on.load(StdOrdering::Relaxed) > 0);
}
