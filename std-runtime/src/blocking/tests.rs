//! The blocking pool's bounds, order, panics, give-ups, shutdown and counts. Calls are held
//! by gates the test opens, so every assertion is about what happened, never how long it
//! took; a wait for a state has a generous bound only so a bug fails instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// A gate calls wait at until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn is_open(&self) -> bool {
        *self.0 .0.lock().unwrap()
    }

    /// Waits until open, ignoring any stop flag (a call that cannot be stopped).
    fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }

    /// Waits until open or `cx.should_stop()`; returns whether it was told to stop.
    fn wait_or_stop(&self, cx: &CallCx<'_>) -> bool {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            if cx.should_stop() {
                return true;
            }
            open = self
                .0
                 .1
                .wait_timeout(open, Duration::from_millis(1))
                .unwrap()
                .0;
        }
        false
    }
}

/// Waits until `cond` holds; fails the test (instead of hanging) after a minute.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Counts its drops in a shared counter.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Silences the panics these tests inject (their message contains "injected").
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if !msg.contains("injected") {
                default(info);
            }
        }));
    });
}

fn pool(threads: usize, queue: usize) -> BlockingPool {
    BlockingPool::new(BlockingConfig { threads, queue }).unwrap()
}

/// Every accepted call is in exactly one place.
fn assert_conserved(s: &BlockingStats) {
    let ended = s.completed + s.panicked + s.abandoned + s.handed_back;
    assert_eq!(
        s.accepted,
        ended + s.running as u64 + s.queued as u64,
        "conservation: {s:?}"
    );
}

#[test]
fn configs_out_of_bounds_are_refused() {
    let ok = [(1, 0), (8, 256), (MAX_BLOCKING_THREADS, MAX_BLOCKING_QUEUE)];
    for (threads, queue) in ok {
        assert_eq!(BlockingConfig { threads, queue }.validate(), Ok(()));
    }
    let bad = [
        (0, 1, "blocking.threads"),
        (MAX_BLOCKING_THREADS + 1, 1, "blocking.threads"),
        (1, MAX_BLOCKING_QUEUE + 1, "blocking.queue"),
    ];
    for (threads, queue, field) in bad {
        let cfg = BlockingConfig { threads, queue };
        assert_eq!(cfg.validate().unwrap_err().field(), Some(field));
        assert!(BlockingPool::new(cfg).is_err());
    }
}

#[test]
fn threads_start_lazily_and_never_exceed_the_bound_and_a_full_queue_refuses_with_the_input_back() {
    let p = pool(2, 3);
    assert_eq!(p.stats().threads, 0, "no thread before a call");
    let gate = Gate::default();
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut pending = Vec::new();
    for i in 0..5_u64 {
        let (gate, at_once, most) = (gate.clone(), Arc::clone(&now), Arc::clone(&most));
        let call = move |x: u64, _: &CallCx<'_>| {
            let n = at_once.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            gate.wait();
            at_once.fetch_sub(1, Ordering::SeqCst);
            x * 10
        };
        pending.push(p.call(i, call).expect("room for 2 running + 3 queued"));
        if i == 1 {
            wait_for("both calls started", || now.load(Ordering::SeqCst) == 2);
        }
    }
    let s = p.stats();
    assert_eq!((s.threads, s.running, s.queued), (2, 2, 3), "{s:?}");
    assert_conserved(&s);

    // Full: the input comes back untouched, whatever its type.
    let refused = p
        .call(String::from("mine"), |s, _| s.len())
        .expect_err("2 busy threads and 3 queued calls: full");
    assert_eq!(refused.reason, Reason::Full);
    assert_eq!(
        refused.to_string(),
        format!("blocking call refused: {}", Reason::Full)
    );
    assert!(format!("{refused:?}").contains("Full"));
    assert_eq!(refused.into_inner(), "mine");

    gate.open();
    let results: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(results, [0, 10, 20, 30, 40]);
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more calls at once than threads"
    );
    let s = p.stats();
    assert_eq!(
        (s.accepted, s.completed, s.refused_full),
        (5, 5, 1),
        "{s:?}"
    );
    assert_eq!((s.threads, s.running, s.queued), (2, 0, 0), "{s:?}");
    assert_conserved(&s);

    // A zero queue: a call is accepted only when a thread is free (or can be started).
    let p = pool(1, 0);
    let gate = Gate::default();
    let g = gate.clone();
    let held = p.call((), move |(), _| g.wait()).unwrap();
    assert_eq!(p.call(5, |x, _| x).unwrap_err().into_inner(), 5);
    gate.open();
    held.wait().unwrap();
    assert_eq!(p.call(6, |x, _| x).unwrap().wait().unwrap(), 6);
    assert_eq!(p.stats().threads, 1);
}

#[test]
fn queued_calls_run_first_in_first_out() {
    let p = pool(1, 16);
    let gate = Gate::default();
    let order = Arc::new(Mutex::new(Vec::new()));
    let g = gate.clone();
    let first = p.call((), move |(), _| g.wait()).unwrap();
    let pending: Vec<_> = (0..16)
        .map(|i| {
            let order = Arc::clone(&order);
            p.call(i, move |i, _| order.lock().unwrap().push(i))
                .unwrap()
        })
        .collect();
    assert_eq!(p.stats().queued, 16);
    gate.open();
    first.wait().unwrap();
    for p in pending {
        p.wait().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
}

#[test]
fn a_panic_is_caught_and_reported_and_the_thread_lives_on() {
    quiet_injected_panics();
    let p = pool(1, 4);
    let err = p
        .call(1_u8, |_, _| -> u8 {
            panic!("injected panic in a blocking call")
        })
        .unwrap()
        .wait()
        .unwrap_err();
    match &err {
        CallError::Panicked(e) => assert!(e.message.contains("injected"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("blocking call panicked"));
    let name = p
        .call((), |(), _| thread::current().name().map(str::to_owned))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        name.as_deref(),
        Some("flujo-blocking-0"),
        "the same thread ran both"
    );
    let s = p.stats();
    assert_eq!((s.panicked, s.completed, s.threads), (1, 1, 1), "{s:?}");
    assert_conserved(&s);
}

#[test]
fn giving_up_raises_should_stop_and_the_result_is_dropped_exactly_once() {
    let p = pool(1, 4);
    let drops = Arc::new(AtomicUsize::new(0));
    let (started, saw_stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (d, st, ss) = (
        Arc::clone(&drops),
        Arc::clone(&started),
        Arc::clone(&saw_stop),
    );
    let pending = p
        .call((), move |(), cx| {
            st.store(true, Ordering::SeqCst);
            while !cx.should_stop() {
                thread::sleep(Duration::from_millis(1));
            }
            ss.store(true, Ordering::SeqCst);
            Counted(d)
        })
        .unwrap();
    wait_for("the call started", || started.load(Ordering::SeqCst));
    assert!(!pending.is_done());
    pending.abandon();
    wait_for("the call ended", || p.stats().abandoned == 1);
    assert!(saw_stop.load(Ordering::SeqCst), "should_stop turned true");
    // The given-up result is dropped after the call is counted, with no lock held.
    wait_for("the result dropped", || drops.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the result was dropped once"
    );
    let s = p.stats();
    assert_eq!((s.completed, s.abandoned, s.running), (0, 1, 0), "{s:?}");
    assert_conserved(&s);

    // Dropping the Pending gives up the same way.
    let (d, st) = (Arc::clone(&drops), Arc::clone(&started));
    started.store(false, Ordering::SeqCst);
    let pending = p
        .call((), move |(), cx| {
            st.store(true, Ordering::SeqCst);
            while !cx.should_stop() {
                thread::sleep(Duration::from_millis(1));
            }
            Counted(d)
        })
        .unwrap();
    wait_for("the call started", || started.load(Ordering::SeqCst));
    drop(pending);
    wait_for("the call ended", || p.stats().abandoned == 2);
    wait_for("the result dropped", || drops.load(Ordering::SeqCst) >= 2);
    assert_eq!(drops.load(Ordering::SeqCst), 2);

    // A result that came in but was never taken is dropped with its Pending, once; the
    // call counts as completed (it ended while its caller still held it).
    let d = Arc::clone(&drops);
    let mut pending = p.call((), move |(), _| Counted(d)).unwrap();
    wait_for("the call ended", || pending.is_done());
    assert_eq!(drops.load(Ordering::SeqCst), 2, "held in the Pending");
    drop(pending);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    // Taken: the caller owns it, the pool drops nothing.
    let d = Arc::clone(&drops);
    pending = p.call((), move |(), _| Counted(d)).unwrap();
    let taken = pending
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .ok()
        .unwrap();
    assert!(pending.is_done() && pending.try_take().is_none(), "spent");
    drop(pending);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    drop(taken);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    let s = p.stats();
    assert_eq!((s.completed, s.abandoned), (2, 2), "{s:?}");
    assert_conserved(&s);
}

#[test]
fn a_call_given_up_while_queued_never_runs_and_frees_its_place() {
    let p = pool(1, 1);
    let gate = Gate::default();
    let g = gate.clone();
    let first = p.call((), move |(), _| g.wait()).unwrap();
    let (drops, ran) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let r = Arc::clone(&ran);
    let queued = p
        .call(Counted(Arc::clone(&drops)), move |c, _| {
            r.store(true, Ordering::SeqCst);
            drop(c);
        })
        .unwrap();
    assert!(p.call(1, |x, _| x).is_err(), "the queue of 1 is full");
    queued.abandon();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "its input dropped at once");
    let s = p.stats();
    assert_eq!((s.queued, s.abandoned), (0, 1), "{s:?}");
    assert_conserved(&s);
    let next = p.call(2, |x, _| x).expect("its place is free");
    gate.open();
    first.wait().unwrap();
    assert_eq!(next.wait().unwrap(), 2);
    assert!(
        !ran.load(Ordering::SeqCst),
        "a call given up before it started never runs"
    );
    let s = p.stats();
    assert_eq!((s.completed, s.abandoned), (2, 1), "{s:?}");
    assert_conserved(&s);
}

#[test]
fn a_waiter_on_another_thread_is_woken_and_wait_timeout_gives_up_waiting_not_the_call() {
    let p = pool(1, 1);
    let gate = Gate::default();
    let g = gate.clone();
    let mut pending = p
        .call(3_u64, move |x, _| {
            g.wait();
            x + 1
        })
        .unwrap();
    assert!(pending.wait_timeout(Duration::from_millis(5)).is_none());
    assert!(pending.try_take().is_none() && !pending.is_done());
    let waiter = thread::spawn(move || pending.wait().unwrap());
    gate.open();
    assert_eq!(waiter.join().unwrap(), 4);
    assert_eq!(p.stats().completed, 1);
}

#[test]
fn shutdown_lets_queued_calls_run_within_the_grace() {
    let p = pool(1, 8);
    let gate = Gate::default();
    let g = gate.clone();
    let first = p.call(0_u64, move |x, _| {
        g.wait();
        x
    });
    let pending: Vec<_> = (1..=8_u64)
        .map(|i| p.call(i, |x, _| x * 2).unwrap())
        .collect();
    let opener = {
        let gate = gate.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            gate.open();
        })
    };
    let report = p.shutdown(Duration::from_secs(60));
    opener.join().unwrap();
    assert!(!report.grace_passed && report.is_clean(), "{report:?}");
    assert_eq!((report.handed_back, report.threads_joined), (0, 1));
    assert_eq!((report.stats.completed, report.stats.handed_back), (9, 0));
    assert_conserved(&report.stats);
    assert_eq!(first.unwrap().wait().unwrap(), 0);
    let got: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(got, (1..=8).map(|i| i * 2).collect::<Vec<_>>());
    let refused = p.call(9, |x, _| x).unwrap_err();
    assert_eq!((refused.reason, refused.input), (Reason::ShutDown, 9));
    assert_eq!(p.stats().refused_shut_down, 1);
}

#[test]
fn shutdown_with_queued_and_running_calls_loses_nothing() {
    let p = pool(2, 8);
    let gate = Gate::default();
    let (g1, g2) = (gate.clone(), gate.clone());
    let started = Arc::new(AtomicUsize::new(0));
    let (s1, s2) = (Arc::clone(&started), Arc::clone(&started));
    // One call stops when told to, one ignores the flag until the gate opens.
    let polite = p
        .call(1_u64, move |x, cx| {
            s1.fetch_add(1, Ordering::SeqCst);
            (x, g1.wait_or_stop(cx))
        })
        .unwrap();
    let stubborn = p
        .call(2_u64, move |x, _| {
            s2.fetch_add(1, Ordering::SeqCst);
            g2.wait();
            (x, false)
        })
        .unwrap();
    wait_for("both calls started", || started.load(Ordering::SeqCst) == 2);
    let queued: Vec<_> = (10..15_u64)
        .map(|i| p.call(i, |x, _| (x, false)).unwrap())
        .collect();
    assert_eq!(p.stats().queued, 5);

    let report = p.shutdown(Duration::from_millis(10));
    assert!(report.grace_passed, "{report:?}");
    assert_eq!(report.handed_back, 5, "{report:?}");
    assert!(!gate.is_open());
    // The stubborn call still runs; the polite one may not have seen its flag yet.
    assert!((1..=2).contains(&report.stats.running), "{report:?}");
    assert_eq!(report.stats.queued, 0);
    assert_conserved(&report.stats);
    assert_eq!(
        p.call(99, |x, _| (x, false)).unwrap_err().reason,
        Reason::ShutDown
    );
    // Every queued call is handed back into its Pending, input and all.
    for (i, q) in (10..).zip(queued) {
        match q.wait() {
            Err(CallError::Refused(r)) => assert_eq!((r.reason, r.input), (Reason::ShutDown, i)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        polite.wait().unwrap(),
        (1, true),
        "told to stop once the grace passed"
    );
    gate.open();
    assert_eq!(stubborn.wait().unwrap(), (2, false));

    let again = p.shutdown(Duration::from_secs(60));
    assert!(again.is_clean(), "{again:?}");
    assert_eq!(
        report.threads_joined + again.threads_joined,
        2,
        "every thread joined once"
    );
    let s = again.stats;
    assert_eq!(
        (s.accepted, s.completed, s.handed_back, s.refused_shut_down),
        (7, 2, 5, 1)
    );
    assert_conserved(&s);
}

#[test]
fn dropping_the_last_handle_closes_without_waiting_for_calls() {
    let p = pool(1, 4);
    let gate = Gate::default();
    let (g, started) = (gate.clone(), Arc::new(AtomicBool::new(false)));
    let s = Arc::clone(&started);
    let running = p.call(1, move |x, _| {
        s.store(true, Ordering::SeqCst);
        g.wait();
        x
    });
    // Until its thread takes it, a call can still be handed back: wait till it runs.
    wait_for("the call started", || started.load(Ordering::SeqCst));
    let queued = p.call(2, |x, _| x).unwrap();
    let clone = p.clone();
    drop(p);
    assert!(!queued.is_done(), "a clone keeps the pool open");
    drop(clone);
    // Dropping returned while the call still runs, and handed the queued call back.
    assert!(!gate.is_open());
    match queued.wait() {
        Err(CallError::Refused(r)) => assert_eq!((r.reason, r.input), (Reason::ShutDown, 2)),
        other => panic!("{other:?}"),
    }
    gate.open();
    assert_eq!(
        running.unwrap().wait().unwrap(),
        1,
        "the running call ends normally"
    );
}

#[test]
fn counts_are_exact_under_concurrent_callers_that_give_up() {
    quiet_injected_panics();
    let p = pool(3, 4);
    let (taken, refused, panics) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let rounds = if cfg!(miri) { 20 } else { 400 };
    thread::scope(|s| {
        for caller in 0..4_usize {
            let (p, taken, refused, panics) = (&p, &taken, &refused, &panics);
            s.spawn(move || {
                for i in 0..rounds {
                    let n = caller * rounds + i;
                    let call = move |x: usize, cx: &CallCx<'_>| {
                        if x.is_multiple_of(7) {
                            panic!("injected");
                        }
                        if x.is_multiple_of(3) {
                            while !cx.should_stop() {
                                thread::yield_now();
                            }
                        }
                        x
                    };
                    match p.call(n, call) {
                        Err(r) => {
                            assert_eq!(r.into_inner(), n);
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        // Give up on every third call (those wait for the flag), and on
                        // some others at random points.
                        Ok(pending) if n.is_multiple_of(3) || n.is_multiple_of(5) => drop(pending),
                        Ok(pending) => match pending.wait() {
                            Ok(x) => {
                                assert_eq!(x, n);
                                taken.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(CallError::Panicked(_)) => {
                                panics.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => panic!("{e}"),
                        },
                    }
                    assert_conserved(&p.stats());
                }
            });
        }
    });
    let report = p.shutdown(Duration::from_secs(60));
    assert!(report.is_clean(), "{report:?}");
    let s = report.stats;
    assert_conserved(&s);
    assert!(s.threads <= 3 && report.threads_joined <= 3);
    assert_eq!(s.accepted + s.refused_full, 4 * rounds as u64);
    assert_eq!(s.refused_full, refused.load(Ordering::SeqCst) as u64);
    // Panics that a caller saw are counted; give-ups of panicking calls count as panicked.
    assert!(s.panicked >= panics.load(Ordering::SeqCst) as u64);
    assert!(s.completed >= taken.load(Ordering::SeqCst) as u64);
    assert_eq!(s.handed_back, 0);
}
