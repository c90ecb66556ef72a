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
//! `state` holds the places taken (`count`, bits 1.., in `0..=max`) and one bit, `QUEUED`
//! (bit 0): *a submission was queued while every place was taken, and no dispatcher has looked
//! at the queues since*. Every change is a read-modify-write of this one word:
//!
//! | who | when | what (one RMW, `AcqRel`) |
//! |---|---|---|
//! | submitter | after its push | `count < max`: `count + 1`, and the caller starts a dispatcher holding that place; otherwise set `QUEUED` |
//! | dispatcher | found the queues empty | `QUEUED` set: clear it and look again (keeping the place); otherwise `count - 1` and stop |
//!
//! # Why no submission is stranded
//!
//! Take a submission `J`, pushed and then followed by its submitter's RMW `r`.
//!
//! - If `r` took a place, the dispatcher it starts begins after the push (the spawn orders
//!   them), so it finds `J` queued, or taken by another dispatcher, before it can find the
//!   queues empty.
//! - Otherwise `r` set `QUEUED` while `count >= 1`. A dispatcher stops only by a leave RMW that
//!   reads `QUEUED` clear; the first leave RMW after `r` in the word's modification order reads
//!   `QUEUED` set (only a leave clears it), so it clears it and that dispatcher looks again.
//!   That RMW reads `r`'s value or one written by a later RMW (RMWs continue the release
//!   sequence `r` heads), so `r` synchronizes with it: the push happens before the second look,
//!   which finds `J`, or finds it taken.
//!
//! The submitter and the dispatcher meet on RMWs of one location, which always read the latest
//! value in its modification order: no fence and no store-buffering argument are needed, and
//! loom, which checks every interleaving of them, checks the whole protocol (`dispatch/loom.rs`;
//! the previous protocol paired `SeqCst` fences, which loom models as `AcqRel`, so it could not).
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
//! per look that finds the queues empty. Measured alone on one thread (x86-64), a submission
//! that finds every place taken costs about 2-3 ns more (its locked instruction is on the
//! shared word, the fence's was on the stack) and a place taken and given back about 2-3 ns
//! less; both vanish in a submission's end-to-end latency (`submit_latency`, microseconds).
//!
//! The models fail if the protocol is weakened: a leave that ignores `QUEUED`, a submission
//! that skips its write when `QUEUED` is already set (the store-buffering trap: a load instead
//! of an RMW), or a submission RMW that does not release each strand a job in them.

use crate::sync::{AtomicUsize, Ordering};

/// Bit 0 of the word: a submission was queued while every place was taken, and no dispatcher
/// has looked at the queues since.
const QUEUED: usize = 1;

/// One place in the word (the count starts at bit 1).
const PLACE: usize = 2;

/// The places taken in `state`.
const fn count(state: usize) -> usize {
    state / PLACE
}

/// The dispatchers of one executor: the places taken, at most `max`, and the `QUEUED` bit (see
/// the [module docs](self)).
pub(crate) struct Dispatchers {
    /// `count * PLACE | queued`: `count` in `0..=max`, changed by RMWs only (a submitter's
    /// [`submitted`](Self::submitted), a dispatcher's [`try_leave`](Self::try_leave)), each
    /// `AcqRel`: the submitter's release publishes its push to the dispatcher that acquires
    /// it.
    state: AtomicUsize,
    /// The most places, at least 1 (the pool's threads).
    max: usize,
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
    /// a dispatcher that holds it; `false` when every place is taken and `QUEUED` is set, so a
    /// running dispatcher will look at the queues again before it stops.
    #[must_use = "a `true` place must be given to a dispatcher, or the submission may strand"]
    pub(crate) fn submitted(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (next, claimed) = if count(state) < self.max {
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
