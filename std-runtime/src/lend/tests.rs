use std::sync::Mutex;

use flujo_core::graph::ManualClock;

use super::*;

/// A lender with `jobs` queued (each of the priority given), recording what it ran.
struct Queue {
    jobs: Mutex<Vec<Priority>>,
    ran: Mutex<Vec<(Priority, u32)>>,
    waits: WaitCounts,
    /// Sleeps each job for this long (real time).
    job_ns: u64,
}

impl Queue {
    fn new(jobs: Vec<Priority>, job_ns: u64) -> Self {
        Self {
            jobs: Mutex::new(jobs),
            ran: Mutex::new(Vec::new()),
            waits: WaitCounts::default(),
            job_ns,
        }
    }
}

impl Lend for Queue {
    fn run_one(&self, at_least: Priority) -> bool {
        let job = {
            let mut jobs = self.jobs.lock().unwrap();
            let at = jobs.iter().position(|p| p.index() <= at_least.index());
            at.map(|i| jobs.remove(i))
        };
        match job {
            Some(p) => {
                thread::sleep(Duration::from_nanos(self.job_ns));
                self.ran.lock().unwrap().push((p, DEPTH.with(Cell::get)));
                true
            }
            None => false,
        }
    }

    fn waits(&self) -> &WaitCounts {
        &self.waits
    }
}

fn lending<'a>(clock: &'a RuntimeClock, q: &'a Queue, at_least: Priority) -> Lending<'a, true> {
    Lending {
        clock,
        lender: q,
        at_least,
        cancel: None,
    }
}

#[test]
fn a_backoff_runs_queued_jobs_of_its_priority_and_up_and_is_never_shortened() {
    let clock = RuntimeClock::default();
    let q = Queue::new(
        vec![
            Priority::Low,
            Priority::High,
            Priority::Normal,
            Priority::High,
        ],
        100_000,
    );
    let l = lending(&clock, &q, Priority::Normal);
    let gap = 20_000_000;
    let before = clock.now();
    l.wait(gap);
    assert!(clock.now() - before >= gap, "the gap is never shortened");
    let ran = q.ran.lock().unwrap().clone();
    assert_eq!(
        ran,
        vec![
            (Priority::High, 1),
            (Priority::Normal, 1),
            (Priority::High, 1)
        ],
        "Normal and up, in queue order, one level deep"
    );
    assert_eq!(*q.jobs.lock().unwrap(), vec![Priority::Low], "Low is left");
    assert_eq!(q.waits.read(), (1, 0, 3));
    assert_eq!(DEPTH.with(Cell::get), 0);
    assert_eq!(
        BASE.with(Cell::get),
        0,
        "the base is cleared after the outermost wait"
    );
}

#[test]
fn no_job_is_taken_when_less_than_a_slice_is_left() {
    let clock = RuntimeClock::default();
    let q = Queue::new(vec![Priority::High], 0);
    lending(&clock, &q, Priority::High).wait(SLICE / 2);
    assert!(q.ran.lock().unwrap().is_empty());
    assert_eq!(q.waits.read(), (1, 0, 0));
}

#[test]
fn waits_hold_their_thread_in_a_forked_branch_past_the_depth_and_under_a_manual_clock() {
    let clock = RuntimeClock::default();
    let q = Queue::new(vec![Priority::High; 4], 0);
    let l = lending(&clock, &q, Priority::Low);
    {
        let _forked = Forked::enter();
        let before = clock.now();
        l.wait(1_000_000);
        assert!(clock.now() - before >= 1_000_000);
    }
    DEPTH.with(|d| d.set(MAX_DEPTH));
    l.wait(1_000_000);
    DEPTH.with(|d| d.set(0));
    assert!(q.ran.lock().unwrap().is_empty());
    assert_eq!(q.waits.read(), (0, 2, 0));

    let manual = ManualClock::new(0);
    let mc = RuntimeClock::from(manual.clone());
    let l = lending(&mc, &q, Priority::Low);
    l.wait(5_000);
    assert_eq!(
        manual.now(),
        5_000,
        "a manual backoff advances the clock by its ticks"
    );
    assert!(!l.wait_until(5_000, &|| false));
    assert_eq!(manual.now(), 5_000, "waiting for something moves no time");
    assert!(
        q.ran.lock().unwrap().is_empty(),
        "no time to lend under a manual clock"
    );
}

#[test]
fn waiting_until_ready_helps_until_it_is_ready() {
    let clock = RuntimeClock::default();
    let q = Queue::new(vec![Priority::Normal; 1000], 50_000);
    let l = lending(&clock, &q, Priority::Normal);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(10));
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        assert!(l.wait_until(u64::MAX, &|| done
            .load(std::sync::atomic::Ordering::Acquire)));
    });
    let ran = q.ran.lock().unwrap().len();
    assert!(
        (1..1000).contains(&ran),
        "helped while waiting, stopped when ready: {ran}"
    );
    // A tick that has come ends a wait that is not ready.
    assert!(!l.wait_until(clock.now(), &|| false));
}

/// A job that itself waits (backs off) while nested: the nesting stops at `MAX_DEPTH`.
struct Nesting<'a> {
    clock: &'a RuntimeClock,
    waits: WaitCounts,
    deepest: Mutex<(u32, usize)>,
}

impl Lend for Nesting<'_> {
    fn run_one(&self, at_least: Priority) -> bool {
        let depth = DEPTH.with(Cell::get);
        let used = BASE.with(Cell::get).abs_diff(stack_here());
        {
            let mut d = self.deepest.lock().unwrap();
            *d = (d.0.max(depth), d.1.max(used));
        }
        let l = Lending::<true> {
            clock: self.clock,
            lender: self,
            at_least,
            cancel: None,
        };
        l.wait(2_000_000);
        true
    }

    fn waits(&self) -> &WaitCounts {
        &self.waits
    }
}

#[test]
fn nesting_is_bounded_by_the_depth() {
    let clock = RuntimeClock::default();
    let n = Nesting {
        clock: &clock,
        waits: WaitCounts::default(),
        deepest: Mutex::new((0, 0)),
    };
    let l = Lending::<true> {
        clock: &clock,
        lender: &n,
        at_least: Priority::Low,
        cancel: None,
    };
    l.wait(2_000_000);
    let (depth, used) = *n.deepest.lock().unwrap();
    assert_eq!(depth, MAX_DEPTH, "nested up to the bound");
    assert!(used < STACK_BUDGET, "{used} bytes");
    let (lent, held, helped) = n.waits.read();
    assert!(held >= 1, "the deepest wait held its thread");
    assert_eq!(lent, u64::from(MAX_DEPTH));
    assert!(helped >= u64::from(MAX_DEPTH));
}

#[test]
fn a_raised_cancel_flag_ends_a_backoff_early() {
    let clock = RuntimeClock::default();
    let q = Queue::new(Vec::new(), 0);
    let flag = CancelFlag::new();
    let l = Lending::<true> {
        clock: &clock,
        lender: &q,
        at_least: Priority::Normal,
        cancel: Some(&flag),
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(5));
            flag.cancel();
        });
        let before = clock.now();
        l.wait(60_000_000_000); // a minute
        let took = clock.now() - before;
        assert!((5_000_000..30_000_000_000).contains(&took), "{took}");
    });
}
