//! The dispatcher protocol: how many dispatchers run, and how a submission and a dispatcher on
//! its way out never miss each other.
//!
//! A *dispatcher* is a rayon job that pops submissions off the executor's queues and runs them
//! until the queues are empty. [`Dispatchers`] is the one word that decides when one starts and
//! when one may stop; the executor (`exec.rs`: `kick`, `dispatch`, `dispatch_loop`) does what
//! it says. The queues themselves are not in here: the protocol needs only that a push is
//! visible to whoever synchronizes with the pusher afterwards.
//!
//! # The word
//!
//! `state` holds the places taken (`count`, bits 2.., in `0..=max`) and two bits: `QUEUED`
//! (bit 0), *a submission was queued while every place was taken or a dispatcher lingered,
//! and no dispatcher has looked at the queues since*; and `LINGER` (bit 1), *a dispatcher
//! holding a place found the queues empty and waits a moment for more* (at most one lingers).
//! Every change is a read-modify-write of this one word:
//!
//! | who | when | what (one RMW, `AcqRel`) |
//! |---|---|---|
//! | submitter | after its push | `count < max` and `LINGER` clear: `count + 1`, and the caller starts a dispatcher holding that place; otherwise set `QUEUED` |
//! | dispatcher | found the queues empty ([`try_linger`](Dispatchers::try_linger)) | `QUEUED` set: clear it and look again (keeping the place); else `LINGER` clear: set it and linger (keeping the place); else `count - 1` and stop |
//! | lingering dispatcher | saw `QUEUED`, or lingered [`LINGER_TIME`] ([`end_linger`](Dispatchers::end_linger)) | clear `LINGER`; `QUEUED` set: clear it and look again; otherwise `count - 1` and stop |
//! | dispatcher stopping early | see below ([`try_leave`](Dispatchers::try_leave)) | `QUEUED` set: clear it and look again; otherwise `count - 1` and stop |
//!
//! # Lingering
//!
//! A dispatcher that finds the queues empty does not leave at once: it lingers, holding its
//! place, for up to [`LINGER_TIME`] (10 µs: [`LINGER_TURNS`] (64) turns of a spin hint, then
//! yields of the CPU), watching the word for `QUEUED`. It skips the spin when the last
//! submitter ran on its own CPU ([`Dispatchers::linger`]): that submitter cannot submit until
//! the dispatcher yields, and the submitter's ticket skips its spin for the same reason.
//! Meanwhile a submission leaves its job to it (sets `QUEUED`) instead of taking a free
//! place, so a host that submits again as soon as its last run ended (a submit-then-wait
//! loop) hands its job to a thread that is awake and looking, and starts no rayon job (an
//! allocation, and a pool thread that may have to be woken: a system call, and tens of
//! microseconds on a virtual machine). A lingering dispatcher runs no user code, and its wait
//! is bounded: the rayon thread it holds is back in the pool after at most [`LINGER_TIME`].
//! Only one lingers: with more places, a second dispatcher that finds the queues empty leaves
//! as before.
//!
//! A dispatcher that starts to linger on the last submitter's CPU moves off it, to another
//! CPU its affinity allows, by narrowing its affinity for a moment ([`crate::sync::move_off`];
//! Linux; at most once per [`MOVE_GAP`] per thread). A submitter that waits for its run and a
//! pool thread that hands it over on one CPU take turns on that CPU: each hand-off waits for
//! a context switch (about 3.5 µs a submit-then-wait here, against 0.8 µs on two). Kernels
//! put them together by themselves: a woken thread may be placed on its waker's CPU (the
//! project's VMs, whose kernel has a `sched_vcpu_pack` setting, do it often), and while both
//! wait by yielding, neither sleeps, so no wake-up places them apart again. The thread's
//! affinity is restored at once, so a host's own placement of the pool's threads stands.
//!
//! # Why no submission is stranded
//!
//! Take a submission `J`, pushed and then followed by its submitter's RMW `r`.
//!
//! - If `r` took a place, the dispatcher it starts begins after the push (the spawn orders
//!   them), so it finds `J` queued, or taken by another dispatcher, before it can find the
//!   queues empty.
//! - Otherwise `r` set `QUEUED` while `count >= 1` (every place was taken, or a dispatcher
//!   lingered, which holds a place). A dispatcher gives its place up only by an RMW that reads
//!   `QUEUED` clear (a leave, a linger's end, or a `try_linger` that finds another lingering);
//!   the first such RMW after `r` in the word's modification order would read `QUEUED` set
//!   unless an RMW between them cleared it, and only a dispatcher that keeps its place and looks
//!   again clears it. So the first RMW after `r` that clears `QUEUED` exists (a place is held
//!   until it happens, and every dispatcher ends with an RMW that reads `QUEUED`, a linger after
//!   a bounded wait), and it is made by a dispatcher that then looks again. That RMW reads
//!   `r`'s value or one written by a later RMW (RMWs continue the release sequence `r` heads),
//!   so `r` synchronizes with it: the push happens before the second look, which finds `J`,
//!   or finds it taken.
//!
//! The submitter and the dispatcher meet on RMWs of one location, which always read the latest
//! value in its modification order: no fence and no store-buffering argument are needed, and
//! loom, which checks every interleaving of them, checks the whole protocol (`dispatch/loom.rs`;
//! the previous protocol paired `SeqCst` fences, which loom models as `AcqRel`, so it could not).
//! The lingering dispatcher's watch of the word is a plain load, only a hint: the RMW that ends
//! the linger is what orders the push before its look.
//!
//! # Stopping early
//!
//! A dispatcher that stops before it has seen the queues empty (one nested in a forked run's
//! `join` runs one job only; one unwinding from a panic stops at once) calls
//! [`Dispatchers::stop`]: if the queues are not empty, or `QUEUED` was set, it keeps its place
//! and hands it to a fresh dispatcher (the count does not move, so the bound holds); otherwise it
//! gives it up as a dispatcher that found the queues empty does. The place passes by the spawn,
//! which orders everything the old dispatcher saw before everything the fresh one does.
//!
//! # Cost
//!
//! A submission does one load and one successful compare-exchange (retried only when another
//! thread changed the word in between), where the previous protocol did a `SeqCst` fence, a
//! load and, when a place was free, a compare-exchange. A dispatcher does one compare-exchange
//! per look that finds the queues empty, and one more per linger. Measured alone on one thread (x86-64), a submission
//! that finds every place taken costs about 2-3 ns more (its locked instruction is on the
//! shared word, the fence's was on the stack) and a place taken and given back about 2-3 ns
//! less; both vanish in a submission's end-to-end latency (`submit_latency`, microseconds).
//!
//! The models fail if the protocol is weakened: a leave (or a linger's end) that ignores
//! `QUEUED`, a submission that skips its write when `QUEUED` is already set (the
//! store-buffering trap: a load instead of an RMW), or a submission RMW that does not release
//! each strand a job in them.

use std::time::Duration;
#[cfg(not(loom))]
use std::time::Instant;

#[cfg(not(loom))]
use crate::sync::move_off;
use crate::sync::{
    current_cpu, same_cpu, spin_hint, yield_now, AtomicU32, AtomicUsize, Ordering, NO_CPU,
};

/// Bit 0 of the word: a submission was queued while every place was taken (or a dispatcher
/// lingered), and no dispatcher has looked at the queues since.
const QUEUED: usize = 1;

/// Bit 1 of the word: a dispatcher holding a place found the queues empty and lingers, so a
/// submission leaves its job to it (sets `QUEUED`) instead of starting another.
const LINGER: usize = 2;

/// One place in the word (the count starts at bit 2).
const PLACE: usize = 4;

/// Turns of a CPU spin hint a lingering dispatcher waits for `QUEUED` first (26-70 ns a turn
/// on the project's VMs: about 2 µs), before it yields the CPU between looks; none when the
/// last submitter ran on the dispatcher's CPU (see [`Dispatchers::linger`]). Under loom: 1
/// turn, a yield to the model.
///
/// Measured on 1 worker (`submit_latency --mode cycle`, the two threads pinned): with the
/// threads on two CPUs a submit-then-wait took 1.1-2.6 µs with 4 turns and 0.9 µs with 64,
/// since a yield is a system call (about 0.6 µs here) during which the next submission waits;
/// on one CPU every turn only delays the submitter, which cannot run meanwhile.
pub(crate) const LINGER_TURNS: u32 = if cfg!(loom) { 1 } else { 64 };

/// How long a dispatcher lingers at most: [`LINGER_TURNS`] turns of a spin hint, then yields of
/// the CPU (each followed by a look at the word) until this much time has passed since the
/// linger began. Under loom: one yield.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const LINGER_TIME: Duration = Duration::from_micros(10);

/// The least time between two moves of one pool thread off its submitter's CPU (see
/// [`Dispatchers::linger`]): if the kernel keeps putting the two threads back together, the
/// thread tries again at most once a millisecond, a few microseconds of system calls each.
#[cfg(not(loom))]
pub(crate) const MOVE_GAP: Duration = Duration::from_millis(1);

#[cfg(not(loom))]
std::thread_local! {
    /// When this thread last tried to move off its submitter's CPU.
    static LAST_MOVE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Moves the calling thread off CPU `here` (see [`move_off`]), unless it tried less than
/// [`MOVE_GAP`] ago. Returns whether it moved.
#[cfg(not(loom))]
fn move_off_paced(here: u32) -> bool {
    let now = Instant::now();
    let due = LAST_MOVE.with(|last| {
        let due = last.get().is_none_or(|t| now.duration_since(t) >= MOVE_GAP);
        if due {
            last.set(Some(now));
        }
        due
    });
    due && move_off(here)
}

/// What a dispatcher that found the queues empty does next (see
/// [`Dispatchers::try_linger`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Empty {
    /// `QUEUED` was set (now cleared): look at the queues again, still holding the place.
    LookAgain,
    /// It lingers, holding its place: wait for [`Dispatchers::queued`], then
    /// [`Dispatchers::end_linger`].
    Linger,
    /// Another dispatcher lingers: the place was given up; stop.
    Left,
}

/// The places taken in `state`.
const fn count(state: usize) -> usize {
    state / PLACE
}

/// The dispatchers of one executor: the places taken, at most `max`, and the `QUEUED` bit (see
/// the [module docs](self)). Aligned to a line, so that the CPU hints share the word's line
/// (24 bytes in all), as their docs say.
#[repr(align(64))]
pub(crate) struct Dispatchers {
    /// `count * PLACE | linger | queued`: `count` in `0..=max`, changed by RMWs only (a
    /// submitter's [`submitted`](Self::submitted), a dispatcher's
    /// [`try_leave`](Self::try_leave), [`try_linger`](Self::try_linger) and
    /// [`end_linger`](Self::end_linger)), each `AcqRel`: the submitter's release publishes
    /// its push to the dispatcher that acquires it.
    state: AtomicUsize,
    /// The most places, at least 1 (the pool's threads).
    max: usize,
    /// The CPU of the last submitter, as it saw it (or [`NO_CPU`]): a hint for a lingering
    /// dispatcher, written beside `state` so that it travels with the line the submitter's
    /// RMW takes anyway (Relaxed: it orders nothing).
    submitter_cpu: AtomicU32,
    /// The CPU of the dispatcher lingering now, or [`NO_CPU`]: a hint for a submitter that
    /// leaves it its job (see [`lingers_on`](Self::lingers_on)).
    lingerer_cpu: AtomicU32,
    /// Times a lingering dispatcher moved off its submitter's CPU (for the tests).
    #[cfg(test)]
    pub(crate) moves: AtomicUsize,
}

impl Dispatchers {
    /// No dispatcher running, at most `max` at once.
    ///
    /// # Panics
    ///
    /// If `max` is 0, or so large that the count would not fit beside the bit.
    pub(crate) fn new(max: usize) -> Self {
        assert!(max >= 1, "at least one dispatcher");
        assert!(max <= usize::MAX / PLACE, "too many dispatchers");
        Self {
            state: AtomicUsize::new(0),
            max,
            submitter_cpu: AtomicU32::new(NO_CPU),
            lingerer_cpu: AtomicU32::new(NO_CPU),
            #[cfg(test)]
            moves: AtomicUsize::new(0),
        }
    }

    /// The most dispatchers at once.
    #[cfg(test)]
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The places taken now (a reading: it may be stale as soon as it is read).
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        let running = count(self.state.load(Ordering::Acquire));
        debug_assert!(running <= self.max);
        running
    }

    /// Called by a submitter after its push: `true` when it took a free place, and must start
    /// a dispatcher that holds it; `false` when every place is taken, or a dispatcher lingers,
    /// and `QUEUED` is set, so a running dispatcher will look at the queues again before it
    /// stops.
    #[must_use = "a `true` place must be given to a dispatcher, or the submission may strand"]
    pub(crate) fn submitted(&self, cpu: u32) -> bool {
        self.submitter_cpu.store(cpu, Ordering::Relaxed);
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            // A lingering dispatcher holds a place, so `QUEUED` is set only while one is held.
            let (next, claimed) = if count(state) < self.max && state & LINGER == 0 {
                (state + PLACE, true)
            } else {
                (state | QUEUED, false)
            };
            // Written even when `next == state` (`QUEUED` already set): the write is what
            // makes the next leave synchronize with this submission (see the module docs).
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    debug_assert!(count(next) <= self.max);
                    return claimed;
                }
                Err(now) => state = now,
            }
        }
    }

    /// Called by a dispatcher holding a place that found the queues empty: `true` when it gave
    /// the place up and must stop; `false` when `QUEUED` was set, which it cleared, and it
    /// must look at the queues again (still holding its place).
    #[must_use = "a `false` means the queues must be looked at again"]
    pub(crate) fn try_leave(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            debug_assert!(count(state) >= 1, "a leave without a place");
            let (next, left) = if state & QUEUED != 0 {
                (state & !QUEUED, false)
            } else {
                (state - PLACE, true)
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return left,
                Err(now) => state = now,
            }
        }
    }

    /// Called by a dispatcher holding a place that found the queues empty, in place of
    /// [`try_leave`](Self::try_leave): [`Empty::LookAgain`] when `QUEUED` was set (it is
    /// cleared); otherwise [`Empty::Linger`] when no other dispatcher lingers (it now does:
    /// `LINGER` is set, and the place kept), else [`Empty::Left`] (the place given up).
    #[must_use = "a lingering dispatcher must end with `end_linger`"]
    pub(crate) fn try_linger(&self) -> Empty {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            debug_assert!(count(state) >= 1, "a linger without a place");
            let (next, then) = if state & QUEUED != 0 {
                (state & !QUEUED, Empty::LookAgain)
            } else if state & LINGER == 0 {
                (state | LINGER, Empty::Linger)
            } else {
                (state - PLACE, Empty::Left)
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return then,
                Err(now) => state = now,
            }
        }
    }

    /// The turns of a spin hint a linger on CPU `here` starts with: none when the last
    /// submitter ran on `here`, else [`LINGER_TURNS`].
    fn linger_turns(&self, here: u32) -> u32 {
        if self.beside_submitter(here) {
            0
        } else {
            LINGER_TURNS
        }
    }

    /// Whether the last submitter ran on CPU `here`.
    fn beside_submitter(&self, here: u32) -> bool {
        same_cpu(here, self.submitter_cpu.load(Ordering::Relaxed))
    }

    /// The CPU of the dispatcher lingering now, or [`NO_CPU`] (a hint: read after a
    /// [`submitted`](Self::submitted) that left the job queued, it says whether the job was
    /// left to a thread on the submitter's own CPU, which runs only once the submitter gives
    /// the CPU up).
    #[inline]
    pub(crate) fn lingers_on(&self) -> u32 {
        self.lingerer_cpu.load(Ordering::Relaxed)
    }

    /// Whether `QUEUED` is set now: what a lingering dispatcher spins on (a reading only; the
    /// RMW of [`end_linger`](Self::end_linger) is what orders the push before its look).
    pub(crate) fn queued(&self) -> bool {
        self.state.load(Ordering::Relaxed) & QUEUED != 0
    }

    /// A linger's wait: returns once `QUEUED` is set, or [`LINGER_TIME`] has passed (see
    /// [`LINGER_TURNS`]); the caller then calls [`end_linger`](Self::end_linger). Spins
    /// first only when the last submitter was on another CPU: on this one, it cannot submit
    /// until this thread yields. On the submitter's CPU it first moves off it, when its
    /// affinity allows another CPU and it did not try in the last [`MOVE_GAP`].
    pub(crate) fn linger(&self) {
        #[allow(unused_mut)] // moved only outside loom
        let mut here = current_cpu();
        // On the submitter's CPU, it moves off it (paced; see the module docs).
        #[cfg(not(loom))]
        if self.beside_submitter(here) && move_off_paced(here) {
            #[cfg(test)]
            self.moves.fetch_add(1, Ordering::Relaxed);
            here = current_cpu();
        }
        self.lingerer_cpu.store(here, Ordering::Relaxed);
        for _ in 0..self.linger_turns(here) {
            if self.queued() {
                return;
            }
            spin_hint();
        }
        #[cfg(not(loom))]
        {
            let start = Instant::now();
            while !self.queued() && start.elapsed() < LINGER_TIME {
                yield_now();
            }
        }
        #[cfg(loom)]
        if !self.queued() {
            yield_now();
        }
    }

    /// Ends a linger (the caller lingers: [`try_linger`](Self::try_linger) said
    /// [`Empty::Linger`]): clears `LINGER`; then as [`try_leave`](Self::try_leave): `true`
    /// when it gave the place up and must stop, `false` when `QUEUED` was set, which it
    /// cleared, and it must look at the queues again.
    #[must_use = "a `false` means the queues must be looked at again"]
    pub(crate) fn end_linger(&self) -> bool {
        self.lingerer_cpu.store(NO_CPU, Ordering::Relaxed);
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            debug_assert!(state & LINGER != 0, "an end of a linger without one");
            debug_assert!(count(state) >= 1, "a linger without a place");
            let (next, left) = if state & QUEUED != 0 {
                (state & !(QUEUED | LINGER), false)
            } else {
                ((state & !LINGER) - PLACE, true)
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return left,
                Err(now) => state = now,
            }
        }
    }

    /// Called by a dispatcher holding a place that stops before it found the queues empty
    /// (nested after its one job, or unwinding): `true` when it must start a fresh dispatcher
    /// and hand it its place (the queues are not empty, or `QUEUED` was set); `false` when it
    /// gave its place up. `queues_empty` reads the queues.
    #[must_use = "a `true` place must be given to a dispatcher, or a submission may strand"]
    pub(crate) fn stop(&self, queues_empty: impl FnOnce() -> bool) -> bool {
        !queues_empty() || !self.try_leave()
    }
}

#[cfg(all(test, not(loom)))]
#[path = "dispatch/tests.rs"]
mod tests;

#[cfg(all(test, loom))]
#[path = "dispatch/loom.rs"]
mod loom;
