//! The runtime's [`Host`]: panics caught per attempt, fan-outs forked on the rayon pool above
//! the inline cutoff, and the shared result cache.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use flujo_core::cache::CacheKey;

use flujo_core::context::Context;
use flujo_core::graph::{Clock, NodeId, StepError};
use flujo_core::interp::{Fan, Host, Lane, SharedCache};
use flujo_core::policy::ErrorClass;

use super::runner_pool::{lock, RunnerPool};
use super::select::{Adapting, Selecting};
use crate::cache::{Flight, Lookup, ResultCache};
use crate::lend::Forked;

/// What one run lends the interpreter.
pub(crate) struct RtHost<'a, P, C> {
    pub(crate) runners: &'a RunnerPool<P, C>,
    pub(crate) pool: &'a rayon::ThreadPool,
    /// Fan-outs whose cost is at most this run inline (`None`: every fan-out forks).
    pub(crate) cutoff: Option<u32>,
    /// Whether the pool has more than one thread (else forking cannot pay).
    pub(crate) parallel: bool,
    pub(crate) cache: Option<&'a (dyn SharedCache<P> + 'a)>,
    /// The adaptive inline cutoff, when on.
    pub(crate) adapt: Option<Adapting<'a>>,
}

/// The message of a panic payload (`&str` and `String` payloads; others are named only).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic payload that is not a string".to_string()
    }
}

impl<P, C, K> Host<P, C, K> for RtHost<'_, P, C>
where
    P: Clone + Send + Sync,
    C: Context + Send + Sync,
    K: Clock + Sync,
{
    #[inline(always)]
    fn guard(&self, attempt: impl FnOnce() -> Result<P, StepError>) -> Result<P, StepError> {
        // A failed attempt's context writes are discarded by the interpreter, so nothing a
        // panicking step half-did is seen afterwards: unwind safety holds for the run.
        match panic::catch_unwind(AssertUnwindSafe(attempt)) {
            Ok(result) => result,
            Err(payload) => {
                let message = format!("step panicked: {}", panic_message(&*payload));
                Err(StepError::new(ErrorClass::Panic, message))
            }
        }
    }

    #[inline]
    fn forks(&self, node: NodeId, _width: usize, cost: u32) -> bool {
        if !self.parallel {
            return false;
        }
        let Some(max) = self.cutoff else {
            return true;
        };
        // The adaptive cutoff times one fan-out in `sample_every` (forking it if need be).
        let timed = self
            .adapt
            .as_ref()
            .is_some_and(|a| a.times(node, cost, max));
        timed || cost > max
    }

    fn fork(&self, max_width: usize, fan: &Fan<'_, P, C, K, Self>, branches: &mut [Lane<P, C>]) {
        let timed = self.adapt.as_ref().and_then(|_| Adapting::take_timed());
        // The branches' summed time, when this fan-out is timed.
        let took = std::sync::atomic::AtomicU64::new(0);
        let mut run_all = || {
            for wave in branches.chunks_mut(max_width.max(1)) {
                each_in_parallel(wave, &|b| {
                    // Its waits hold the thread: the join frame below holds it anyway.
                    let _forked = Forked::enter();
                    match (timed, &self.adapt) {
                        (Some(_), Some(a)) => {
                            let t0 = a.clock.now();
                            self.runners.with(|w| fan.run(b, &mut w.runner));
                            let t = a.clock.now().saturating_sub(t0);
                            took.fetch_add(t, std::sync::atomic::Ordering::Relaxed);
                        }
                        _ => self.runners.with(|w| fan.run(b, &mut w.runner)),
                    }
                });
            }
        };
        if self.pool.current_thread_index().is_some() {
            run_all();
        } else {
            self.pool.install(run_all);
        }
        if let (Some(t), Some(a)) = (timed, &self.adapt) {
            a.learn(t, took.into_inner());
        }
    }

    #[inline(always)]
    fn cache(&self) -> Option<&dyn SharedCache<P>> {
        self.cache
    }
}

/// Calls `f` on every item, splitting the slice in halves with `rayon::join` (on the current
/// pool), so idle workers steal halves.
fn each_in_parallel<T: Send>(items: &mut [T], f: &(dyn Fn(&mut T) + Sync)) {
    match items {
        [] => {}
        [one] => f(one),
        _ => {
            let (a, b) = items.split_at_mut(items.len() / 2);
            rayon::join(|| each_in_parallel(a, f), || each_in_parallel(b, f));
        }
    }
}

/// The executor's [`ResultCache`] as the interpreter's [`SharedCache`], for one run: a miss
/// makes the run the key's computer until `fill` (a concurrent run missing the same key
/// waits for it inside `lookup`, at most until the cache's flight timeout or its own
/// deadline, whichever comes first, and then computes on its own).
pub(crate) struct CacheBridge<'a, P: Clone + Send + Sync> {
    pub(crate) cache: &'a ResultCache<P>,
    /// The run's deadline, in ticks of the executor's clock (the cache reads the same one).
    deadline: Option<u64>,
    /// The computations this run leads (a forked run's branches share them).
    flights: Mutex<Vec<(CacheKey, Flight<'a, P>)>>,
    /// Outputs heavier than this are not stored (the degradation action
    /// `bypass_large_payloads`; `usize::MAX` when it is not in force).
    store_max: usize,
    /// The automatic cache bypass, when on.
    select: Option<Selecting<'a>>,
}

impl<'a, P: Clone + Send + Sync> CacheBridge<'a, P> {
    /// The bridge of one run whose deadline is `deadline` (ticks of the executor's clock).
    /// Outputs heavier than `store_max` (by the cache's weigher) are not stored.
    pub(crate) fn new(cache: &'a ResultCache<P>, deadline: Option<u64>, store_max: usize) -> Self {
        Self {
            cache,
            deadline,
            flights: Mutex::new(Vec::new()),
            store_max,
            select: None,
        }
    }

    /// The bridge with the automatic cache bypass `select` on.
    pub(crate) fn selecting(mut self, select: Option<Selecting<'a>>) -> Self {
        self.select = select;
        self
    }
}

impl<P: Clone + Send + Sync> SharedCache<P> for CacheBridge<'_, P> {
    #[inline]
    fn wants(&self, node: NodeId) -> bool {
        self.select.as_ref().is_none_or(|s| s.wants(node))
    }

    fn lookup(&self, node: NodeId, key: &CacheKey) -> Option<P> {
        let found = match self.cache.lookup_until(*key, self.deadline) {
            Lookup::Hit(v) => Some(v),
            Lookup::Miss(flight) => {
                lock(&self.flights).push((*key, flight));
                None
            }
        };
        if let Some(s) = &self.select {
            s.looked_up(node, found.is_some());
        }
        found
    }

    fn fill(&self, key: CacheKey, output: Option<&P>) {
        let flight = {
            let mut flights = lock(&self.flights);
            let at = flights.iter().rposition(|(k, _)| *k == key);
            at.map(|i| flights.swap_remove(i).1)
        };
        // Dropping a flight without a value wakes the waiters, one of which computes.
        if let (Some(flight), Some(out)) = (flight, output) {
            if self.store_max == usize::MAX || self.cache.weigh(out) <= self.store_max {
                flight.complete(out.clone());
            }
        }
    }
}
