//! A concurrent, bounded result cache with single-flight computation, keyed by
//! [`CacheKey`].
//!
//! [`ResultCache`] stores step outputs under their 256-bit BLAKE3 [`CacheKey`]s:
//!
//! - **Sharded.** A power-of-two number of shards, each a [`std::sync::Mutex`] around a hash
//!   map, a CLOCK ring and the computations in flight. The shard comes from bytes 8..16 of the
//!   key and the map hash from bytes 0..8 (the key is already uniform, so nothing is rehashed);
//!   hits on different shards never touch the same lock or cache line.
//! - **Bounded by entries and bytes, exactly.** A weigher given at construction (by default
//!   `size_of::<V>()`) gives each value's weight. Both totals are split over the shards: shard
//!   `i` of `n` gets `total / n`, plus one if `i < total % n`, so the budgets sum to the totals
//!   exactly. After any call returns, each shard is within its budgets, so the cache holds at
//!   most `max_entries` entries weighing at most `max_bytes`. A value heavier than its shard's
//!   byte budget (about `max_bytes / shards`) is not stored (counted in `rejected_too_big`).
//!   Only the weights count: the map's own memory is not in `bytes`.
//! - **CLOCK eviction** (second chance) per shard: a hit sets a bit, and the hand evicts the
//!   oldest entry whose bit is clear, clearing bits as it passes. It keeps frequently hit
//!   entries at the cost of one bit and one ring slot per entry; see `shard.rs`.
//! - **TTL** (optional, one for the whole cache) measured by the cache's
//!   [`RuntimeClock`] (an executor gives its own, so a test that moves a
//!   [`ManualClock`](flujo_core::graph::ManualClock) moves expiry too). An expired entry is a miss; it is removed when a lookup or the clock hand finds it (counted
//!   as expired), so [`ResultCache::len`] may count expired entries not yet seen.
//! - **Resizable.** [`ResultCache::set_capacity`] evicts down to the new bounds before it
//!   returns.
//! - **Single flight.** [`ResultCache::lookup`] on a missing key makes the caller the leader of
//!   the key's computation ([`Lookup::Miss`] with a [`Flight`]); callers that miss while it
//!   runs wait, then get the leader's value as a [`Lookup::Hit`] (counted as coalesced), even
//!   when the value was too big to store. A flight dropped without a value (the computation
//!   failed or panicked) wakes its waiters and one of them becomes the new leader. A wait is
//!   bounded by the cache's flight timeout and by the waiter's own deadline
//!   ([`ResultCache::lookup_until`]); a waiter that runs out of time computes on its own.
//! - **Exact counters**: [`CacheStats`]. A hit, the common case, is counted in its shard under
//!   the lock it already holds; the rarer events in shared relaxed atomics.
//!
//! # Locks and user code
//!
//! The computation, the weigher and the clock never run under a shard lock. `V::clone` and
//! `V`'s destructor do (a hit clones the value under the lock; an evicted value is dropped
//! under it), so `V` should be cheap to clone, e.g. an `Arc`. A panic under a lock poisons it;
//! the cache ignores poisoning (every shard stays consistent at each point where user code can
//! panic), so one panicking caller never breaks the cache for the others. (One corner: a
//! destructor that panics while `set_capacity` evicts leaves that shard above its new budget
//! until its next insert, which evicts down to it.)
//!
//! # Checked by loom
//!
//! The shards' locks, the flights' condition variables, their `Arc`s and the counters come
//! through `crate::sync`, so under `--cfg loom` the models in `cache/loom.rs` run this code on
//! loom's: a leader that completes while a follower starts waiting (no lost wake-up, one
//! computation), a leader that gives up while two followers wait (exactly one takes over), and
//! a follower whose flight timeout passes while it waits. loom's condition variable never
//! times out, so under loom a timed wait is a wake-up at any moment (the caller reads the clock
//! again), which a real timed wait allows too, spuriously; outside loom it is `wait_timeout`.

mod shard;
mod stats;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom;

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::PoisonError;
use std::time::Duration;

use flujo_core::cache::CacheKey;
use flujo_core::graph::Clock;

pub use stats::CacheStats;

use crate::clock::{self, RuntimeClock};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

use shard::{key_word, MapKey, Probe, Shard, ShardState, NEVER_NS};
use stats::{bump, Counters};

/// The most shards a cache may have.
pub const MAX_SHARDS: usize = 1 << 12;

/// The most shards the default shard count picks.
const DEFAULT_SHARDS_MAX: usize = 64;

/// Locks `mutex`, ignoring poisoning: see "Locks and user code" in the module docs.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives each value its weight in bytes.
pub(crate) type Weigher<V> = Box<dyn Fn(&V) -> usize + Send + Sync>;

/// A concurrent result cache: sharded, bounded by entries and bytes (CLOCK eviction), with an
/// optional TTL and single-flight computation. See the [module docs](self) for the design.
///
/// # Examples
///
/// ```
/// use flujo_core::cache::{CacheKey, StepFingerprint};
/// use flujo_runtime::parts::cache::{Lookup, ResultCache};
///
/// let cache: ResultCache<String> = ResultCache::builder(1024, 1 << 20)
///     .weigher(|value: &String| value.len())
///     .build();
/// let step = StepFingerprint::builder("shout", 1).build();
/// let key = CacheKey::new(&step, "hello");
///
/// // The first caller computes; concurrent callers of the same key would wait for it.
/// let (value, hit) = cache
///     .get_or_compute(key, || Ok::<_, ()>("HELLO".to_string()))
///     .unwrap();
/// assert_eq!((value.as_str(), hit), ("HELLO", false));
///
/// // The next caller hits.
/// match cache.lookup(key) {
///     Lookup::Hit(value) => assert_eq!(value, "HELLO"),
///     Lookup::Miss(_) => unreachable!("just stored"),
/// }
/// assert_eq!(cache.bytes(), 5);
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 1, 1));
/// ```
pub struct ResultCache<V> {
    /// `shards.len()` is a power of two.
    shards: Box<[Shard<V>]>,
    /// The total budgets `(max_entries, max_bytes)`; its lock serialises `set_capacity`.
    capacity: Mutex<(usize, usize)>,
    weigher: Weigher<V>,
    /// `None`: entries never expire.
    ttl_ns: Option<u64>,
    /// `None`: a waiter waits for the leader as long as it takes (or until its deadline).
    flight_timeout: Option<Duration>,
    /// Expiry and the waits' deadlines are ticks (ns) of this clock.
    clock: RuntimeClock,
    counters: Counters,
}

/// Configures a [`ResultCache`]; made by [`ResultCache::builder`].
pub struct ResultCacheBuilder<V> {
    max_entries: usize,
    max_bytes: usize,
    weigher: Weigher<V>,
    ttl: Option<Duration>,
    flight_timeout: Option<Duration>,
    clock: RuntimeClock,
    shards: Option<usize>,
}

impl<V: Clone + Send + Sync> ResultCacheBuilder<V> {
    /// Weighs values with `weigher` (bytes) instead of `size_of::<V>()`. It runs outside the
    /// cache's locks, once per stored value.
    pub fn weigher(mut self, weigher: impl Fn(&V) -> usize + Send + Sync + 'static) -> Self {
        self.weigher = Box::new(weigher);
        self
    }

    /// [`weigher`](Self::weigher) for a weigher already boxed (the executor's).
    pub(crate) fn boxed_weigher(mut self, weigher: Weigher<V>) -> Self {
        self.weigher = weigher;
        self
    }

    /// Entries expire `ttl` after they are stored, as measured by the cache's clock.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Reads time from `clock` (default: the monotonic
    /// [`MonoClock`](crate::clock::MonoClock)): entry expiry and the waits' deadlines.
    pub fn clock(mut self, clock: impl Into<RuntimeClock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// A caller waiting for another's computation of the same key waits at most `timeout`
    /// (by the cache's clock, from the lookup's first wait), then gets a [`Flight`] of its own that
    /// is not the key's leader: it computes, its value is stored as by
    /// [`ResultCache::insert`], and it wakes nobody. Without a timeout, waiters wait as long
    /// as the leader runs (or until the deadline given to [`ResultCache::lookup_until`]).
    pub fn flight_timeout(mut self, timeout: Duration) -> Self {
        self.flight_timeout = Some(timeout);
        self
    }

    /// Uses `shards` shards, rounded up to a power of two and clamped to `1..=MAX_SHARDS`.
    ///
    /// The default is four per available core, rounded up to a power of two, at most 64,
    /// halved while it exceeds `max_entries`. Each shard gets `1/shards` of each budget, so
    /// the largest storable value weighs about `max_bytes / shards`.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.clamp(1, MAX_SHARDS).next_power_of_two());
        self
    }

    /// Makes the cache.
    pub fn build(self) -> ResultCache<V> {
        let shard_count = self
            .shards
            .unwrap_or_else(|| default_shard_count(self.max_entries));
        debug_assert!(shard_count.is_power_of_two() && shard_count <= MAX_SHARDS);
        let shards = (0..shard_count)
            .map(|index| Shard {
                state: Mutex::new(ShardState::new(
                    share(self.max_entries, shard_count, index),
                    share(self.max_bytes, shard_count, index),
                )),
            })
            .collect();
        ResultCache {
            shards,
            capacity: Mutex::new((self.max_entries, self.max_bytes)),
            weigher: self.weigher,
            ttl_ns: self.ttl.map(clock::ticks),
            flight_timeout: self.flight_timeout,
            clock: self.clock,
            counters: Counters::default(),
        }
    }
}

impl<V: Clone + Send + Sync> fmt::Debug for ResultCacheBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultCacheBuilder")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("ttl", &self.ttl)
            .field("flight_timeout", &self.flight_timeout)
            .field("clock", &self.clock)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// The default shard count: see [`ResultCacheBuilder::shards`].
fn default_shard_count(max_entries: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(4, NonZeroUsize::get);
    let mut shards = cores
        .saturating_mul(4)
        .next_power_of_two()
        .min(DEFAULT_SHARDS_MAX);
    while shards > 1 && shards > max_entries {
        shards /= 2;
    }
    shards
}

/// Shard `index`'s part of `total` over `shard_count` shards; the parts sum to `total`.
fn share(total: usize, shard_count: usize, index: usize) -> usize {
    total / shard_count + usize::from(index < total % shard_count)
}

/// What a [`ResultCache`] holds ([`ResultCache::memory`]), in bytes counted from its own
/// structures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheMemory {
    /// Entries stored (expired ones not yet removed included), as [`ResultCache::len`].
    pub entries: usize,
    /// Their total weight as the weigher gave it, as [`ResultCache::bytes`]: at most the
    /// cache's `max_bytes`.
    pub weight_bytes: usize,
    /// The fixed overhead: the cache and its shards, and the slots of each shard's map, CLOCK
    /// ring and flight table (capacity times slot size; hash-table control bytes and the
    /// allocator's rounding are not counted). A map slot holds the value itself, so with the
    /// default weigher (`size_of::<V>()`) a value's inline bytes are in both figures.
    pub slot_bytes: usize,
}

/// What [`ResultCache::lookup`] found.
#[derive(Debug)]
#[must_use = "a dropped Miss abandons the computation and wakes its waiters"]
pub enum Lookup<'a, V: Clone + Send + Sync> {
    /// The value: stored, or computed by the leader this caller waited for.
    Hit(V),
    /// No value: the caller computes it and hands it to [`Flight::complete`].
    Miss(Flight<'a, V>),
}

/// The right, and duty, to compute a key's value: complete it with [`Flight::complete`], or
/// drop it if the computation fails, which wakes the waiters so one of them takes over.
#[must_use = "dropping a Flight abandons the computation"]
pub struct Flight<'a, V: Clone + Send + Sync> {
    cache: &'a ResultCache<V>,
    key: CacheKey,
    /// The key's flight cell if this caller is the key's leader and has not finished; `None`
    /// once completed, and for a waiter that timed out (it leads nobody).
    cell: Option<Arc<FlightCell<V>>>,
}

/// Where waiters of a computation wait for its outcome.
pub(crate) struct FlightCell<V> {
    outcome: Mutex<Outcome<V>>,
    /// Notified once, when `outcome` leaves `Running`.
    finished: Condvar,
}

/// The outcome of a computation in flight.
enum Outcome<V> {
    Running,
    Done(V),
    Abandoned,
}

/// What a waiter saw.
enum Waited<V> {
    Done(V),
    Abandoned,
    TimedOut,
}

impl<V: Clone> FlightCell<V> {
    fn new() -> Self {
        Self {
            outcome: Mutex::new(Outcome::Running),
            finished: Condvar::new(),
        }
    }

    /// Sets the outcome if it is still running (a panic between `Done` and the flight's
    /// completion must not turn `Done` into `Abandoned`), and wakes the waiters.
    fn finish(&self, outcome: Outcome<V>) {
        let mut current = lock(&self.outcome);
        if matches!(*current, Outcome::Running) {
            *current = outcome;
        }
        drop(current);
        self.finished.notify_all();
    }

    /// Waits until the computation finishes or `clock` reaches tick `deadline`.
    ///
    /// The condition variable sleeps in real time for the time `clock` says is left, then
    /// reads `clock` again: under a [`ManualClock`](flujo_core::graph::ManualClock) a waiter wakes
    /// to see whether the clock was moved, and times out once it was moved past `deadline`.
    fn wait(&self, deadline: Option<u64>, clock: &RuntimeClock) -> Waited<V> {
        let mut outcome = lock(&self.outcome);
        loop {
            match &*outcome {
                Outcome::Done(value) => return Waited::Done(value.clone()),
                Outcome::Abandoned => return Waited::Abandoned,
                Outcome::Running => {}
            }
            outcome = match deadline {
                None => self
                    .finished
                    .wait(outcome)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = clock.until(deadline);
                    if left.is_zero() {
                        return Waited::TimedOut;
                    }
                    self.wait_at_most(outcome, left)
                }
            };
        }
    }

    /// Waits for the notification, `left` at most (and may return early, as a condition
    /// variable may wake spuriously).
    #[cfg(not(loom))]
    fn wait_at_most<'a>(
        &'a self,
        outcome: MutexGuard<'a, Outcome<V>>,
        left: Duration,
    ) -> MutexGuard<'a, Outcome<V>> {
        self.finished
            .wait_timeout(outcome, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Under loom, whose `wait_timeout` never times out (so a waiter whose clock moves past its
    /// deadline without a notification would hang the model): lets go of the lock, lets the
    /// other threads run and returns, a wake-up at any moment, which the real one allows too
    /// (spuriously). The caller reads its clock again.
    #[cfg(loom)]
    fn wait_at_most<'a>(
        &'a self,
        outcome: MutexGuard<'a, Outcome<V>>,
        _left: Duration,
    ) -> MutexGuard<'a, Outcome<V>> {
        drop(outcome);
        crate::sync::yield_now();
        lock(&self.outcome)
    }
}

impl<V: Clone + Send + Sync> ResultCache<V> {
    /// A cache of at most `max_entries` entries weighing at most `max_bytes` in total, with
    /// the default weigher (`size_of::<V>()`), no TTL and the default shard count.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self::builder(max_entries, max_bytes).build()
    }

    /// Starts configuring a cache bounded by `max_entries` and `max_bytes`.
    pub fn builder(max_entries: usize, max_bytes: usize) -> ResultCacheBuilder<V> {
        ResultCacheBuilder {
            max_entries,
            max_bytes,
            weigher: Box::new(|_| size_of::<V>()),
            ttl: None,
            flight_timeout: None,
            clock: RuntimeClock::default(),
            shards: None,
        }
    }

    /// The shard of `key`.
    #[inline]
    fn shard(&self, key: &CacheKey) -> &Shard<V> {
        // The length is a power of two, so the mask keeps the index in range; the truncation
        // to usize keeps the low bits, which is all the mask needs.
        let index = (key_word(key, 1) as usize) & (self.shards.len() - 1);
        &self.shards[index]
    }

    /// The deadline of an entry stored at `now_ns`.
    fn deadline_ns(&self, now_ns: u64) -> u64 {
        self.ttl_ns
            .map_or(NEVER_NS, |ttl_ns| now_ns.saturating_add(ttl_ns))
    }

    /// Looks `key` up, and on a miss makes the caller compute it, once for all callers.
    ///
    /// - A live stored value: [`Lookup::Hit`] (counted in `hits`).
    /// - Another caller is computing the value: waits for it (up to the flight timeout, if
    ///   any), then [`Lookup::Hit`] with its value (counted in `coalesced`). If that caller
    ///   drops its flight, the waiters look again and one of them becomes the leader.
    /// - Otherwise: [`Lookup::Miss`] (counted in `misses`) with a [`Flight`] that makes this
    ///   caller the key's leader until it completes or drops it.
    ///
    /// A waiter that times out gets a [`Lookup::Miss`] whose flight leads nobody (see
    /// [`ResultCacheBuilder::flight_timeout`]).
    pub fn lookup(&self, key: CacheKey) -> Lookup<'_, V> {
        self.lookup_until(key, None)
    }

    /// [`lookup`](Self::lookup) by a caller with a deadline: a wait for another caller's
    /// computation ends at tick `deadline` of the cache's clock (see
    /// [`ResultCacheBuilder::clock`]) or at the flight timeout, whichever comes first; the
    /// caller then gets a [`Lookup::Miss`] whose flight leads nobody, and computes on its
    /// own. `None`: only the flight timeout bounds the wait. A deadline already passed never
    /// waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::cache::{CacheKey, StepFingerprint};
    /// use flujo_core::graph::Clock;
    /// use flujo_runtime::parts::cache::{Lookup, ResultCache};
    ///
    /// let cache: ResultCache<u64> = ResultCache::new(64, 1 << 10);
    /// let key = CacheKey::new(&StepFingerprint::builder("slow", 1).build(), &7u64);
    /// let Lookup::Miss(leader) = cache.lookup(key) else { unreachable!() };
    /// // Another caller whose deadline has passed does not wait for the leader.
    /// let now = flujo_runtime::clock::MonoClock::new().now();
    /// let Lookup::Miss(own) = cache.lookup_until(key, Some(now)) else { unreachable!() };
    /// assert!(leader.is_leader() && !own.is_leader());
    /// assert_eq!(own.complete(49), 49);
    /// ```
    pub fn lookup_until(&self, key: CacheKey, deadline: Option<u64>) -> Lookup<'_, V> {
        let map_key = MapKey(key);
        let shard = self.shard(&key);
        // The wait's end, worked out at the first wait: a hit reads no clock for it.
        let mut deadline_set: Option<Option<u64>> = None;
        let mut waited = false;
        loop {
            // Without a TTL nothing expires: a hit reads no clock at all.
            let now_ns = if self.ttl_ns.is_some() {
                self.clock.now()
            } else {
                0
            };
            let mut state = lock(&shard.state);
            if let Probe::Hit(value) = state.probe(map_key, now_ns, &self.counters) {
                if waited {
                    drop(state);
                    bump(&self.counters.coalesced);
                } else {
                    state.hits += 1;
                }
                return Lookup::Hit(value);
            }
            if let Some(cell) = state.flights.get(&map_key) {
                let cell = Arc::clone(cell);
                drop(state);
                waited = true;
                let deadline = *deadline_set.get_or_insert_with(|| {
                    let timeout = self
                        .flight_timeout
                        .and_then(|t| self.clock.deadline_after(t));
                    match (timeout, deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                });
                match cell.wait(deadline, &self.clock) {
                    Waited::Done(value) => {
                        bump(&self.counters.coalesced);
                        return Lookup::Hit(value);
                    }
                    Waited::Abandoned => continue,
                    Waited::TimedOut => {
                        bump(&self.counters.misses);
                        return Lookup::Miss(Flight {
                            cache: self,
                            key,
                            cell: None,
                        });
                    }
                }
            }
            let cell = Arc::new(FlightCell::new());
            state.flights.insert(map_key, Arc::clone(&cell));
            drop(state);
            bump(&self.counters.misses);
            return Lookup::Miss(Flight {
                cache: self,
                key,
                cell: Some(cell),
            });
        }
    }

    /// Returns `key`'s value, computing it with `compute` on a miss; the flag is true when the
    /// value was not computed by this call (a hit, or a wait for another caller's computation).
    ///
    /// `compute` runs outside every lock. If it fails, the error is returned and nothing is
    /// stored; if it fails or panics, the callers waiting for it are woken and one of them
    /// computes instead.
    ///
    /// # Errors
    ///
    /// The error of `compute`, when this call ran it.
    pub fn get_or_compute<E>(
        &self,
        key: CacheKey,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<(V, bool), E> {
        match self.lookup(key) {
            Lookup::Hit(value) => Ok((value, true)),
            Lookup::Miss(flight) => {
                let value = compute()?;
                Ok((flight.complete(value), false))
            }
        }
    }

    /// Returns `key`'s live stored value (counted in `hits` or `misses`). Never waits for a
    /// computation in flight.
    pub fn get(&self, key: &CacheKey) -> Option<V> {
        let now_ns = self.clock.now();
        let mut state = lock(&self.shard(key).state);
        let probe = state.probe(MapKey(*key), now_ns, &self.counters);
        if matches!(probe, Probe::Hit(_)) {
            state.hits += 1;
        }
        drop(state);
        match probe {
            Probe::Hit(value) => Some(value),
            Probe::Absent => {
                bump(&self.counters.misses);
                None
            }
        }
    }

    /// Stores `value` under `key`, replacing any old value and evicting as needed.
    ///
    /// It does not wake callers waiting for a computation of `key`: they get its leader's
    /// value.
    ///
    /// # Errors
    ///
    /// Gives `value` back when it does not fit its shard's budget (counted in
    /// `rejected_too_big`); the old value of `key`, if any, is removed all the same.
    pub fn insert(&self, key: CacheKey, value: V) -> Result<(), V> {
        let weight_bytes = (self.weigher)(&value);
        let now_ns = self.clock.now();
        let mut slot = Some(value);
        let stored = lock(&self.shard(&key).state).store(
            MapKey(key),
            weight_bytes,
            self.deadline_ns(now_ns),
            now_ns,
            &self.counters,
            || slot.take().expect("store calls make at most once"),
        );
        match slot {
            None => Ok(()),
            Some(value) => {
                debug_assert!(!stored, "a stored value was not taken");
                Err(value)
            }
        }
    }

    /// Removes `key`'s entry, returning its value if it was live.
    pub fn remove(&self, key: &CacheKey) -> Option<V> {
        let now_ns = self.clock.now();
        let removed = lock(&self.shard(key).state).remove(MapKey(*key), now_ns, &self.counters);
        removed
    }

    /// Removes every entry; computations in flight go on and store their values. Counts
    /// nothing.
    pub fn clear(&self) {
        for shard in &self.shards {
            lock(&shard.state).clear();
        }
    }

    /// The number of entries stored, expired ones not yet removed included. Under concurrent
    /// use the shards are read one after another.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(&shard.state).len())
            .sum()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total weight of the entries stored (see [`len`](Self::len)).
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(&shard.state).bytes())
            .sum()
    }

    /// The weight of `value`, by the cache's weigher.
    pub(crate) fn weigh(&self, value: &V) -> usize {
        (self.weigher)(value)
    }

    /// What the cache holds, shard by shard under each shard's lock (so each shard's three
    /// figures agree; under concurrent use the shards are read one after another): entries,
    /// their weight, and the fixed overhead of the slots.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::cache::{CacheKey, StepFingerprint};
    /// use flujo_runtime::parts::cache::ResultCache;
    ///
    /// let cache: ResultCache<Vec<u8>> = ResultCache::builder(64, 1 << 20)
    ///     .weigher(|payload: &Vec<u8>| payload.len())
    ///     .build();
    /// let step = StepFingerprint::builder("blob", 1).build();
    /// cache.insert(CacheKey::new(&step, &1u64), vec![0; 1000]).unwrap();
    /// let held = cache.memory();
    /// assert_eq!((held.entries, held.weight_bytes), (1, 1000));
    /// assert!(held.slot_bytes > 0);
    /// ```
    pub fn memory(&self) -> CacheMemory {
        let mut held = CacheMemory {
            entries: 0,
            weight_bytes: 0,
            slot_bytes: size_of::<Self>() + self.shards.len() * size_of::<Shard<V>>(),
        };
        for shard in &self.shards {
            let state = lock(&shard.state);
            held.entries += state.len();
            held.weight_bytes += state.bytes();
            held.slot_bytes += state.slot_bytes();
        }
        held
    }

    /// The bounds `(max_entries, max_bytes)`.
    pub fn capacity(&self) -> (usize, usize) {
        *lock(&self.capacity)
    }

    /// The number of shards (a power of two).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Changes the bounds. Shrinking evicts every shard down to its new budget before this
    /// returns (a shard at a time, so other shards serve meanwhile); the budgets are split as
    /// at construction. Calls are serialised.
    pub fn set_capacity(&self, max_entries: usize, max_bytes: usize) {
        let mut capacity = lock(&self.capacity);
        *capacity = (max_entries, max_bytes);
        let shard_count = self.shards.len();
        let now_ns = self.clock.now();
        for (index, shard) in self.shards.iter().enumerate() {
            lock(&shard.state).set_budget(
                share(max_entries, shard_count, index),
                share(max_bytes, shard_count, index),
                now_ns,
                &self.counters,
            );
        }
    }

    /// A snapshot of the counters (the hits are counted per shard: each shard's lock is taken
    /// in turn to read them).
    pub fn stats(&self) -> CacheStats {
        let mut stats = self.counters.snapshot();
        stats.hits = self
            .shards
            .iter()
            .map(|shard| lock(&shard.state).hits)
            .sum();
        stats
    }

    /// Stores a leader's `value` (if it fits), ends its flight and hands the value to the
    /// flight's waiters. `flight.cell` stays set until the end, so that a panic on the way
    /// (in `V::clone`) still wakes the waiters through `Flight::drop`.
    fn finish_flight(&self, flight: &mut Flight<'_, V>, value: V, weight_bytes: usize) -> V {
        let map_key = MapKey(flight.key);
        let now_ns = self.clock.now();
        let mut state = lock(&self.shard(&flight.key).state);
        if let Some(cell) = &flight.cell {
            if state
                .flights
                .get(&map_key)
                .is_some_and(|current| Arc::ptr_eq(current, cell))
            {
                state.flights.remove(&map_key);
            }
        }
        state.store(
            map_key,
            weight_bytes,
            self.deadline_ns(now_ns),
            now_ns,
            &self.counters,
            || value.clone(),
        );
        drop(state);
        if let Some(cell) = &flight.cell {
            // Out of the map, so no new waiter can join: only ours hold other references.
            if Arc::strong_count(cell) > 1 {
                cell.finish(Outcome::Done(value.clone()));
            }
        }
        flight.cell = None;
        value
    }

    /// Ends an unfinished flight without a value and wakes its waiters.
    fn abandon_flight(&self, key: CacheKey, cell: &Arc<FlightCell<V>>) {
        let map_key = MapKey(key);
        {
            let mut state = lock(&self.shard(&key).state);
            if state
                .flights
                .get(&map_key)
                .is_some_and(|current| Arc::ptr_eq(current, cell))
            {
                state.flights.remove(&map_key);
            }
        }
        cell.finish(Outcome::Abandoned);
    }
}

impl<V: Clone + Send + Sync> fmt::Debug for ResultCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultCache")
            .field("capacity", &self.capacity())
            .field("shards", &self.shards.len())
            .field("ttl_ns", &self.ttl_ns)
            .field("flight_timeout", &self.flight_timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<'a, V: Clone + Send + Sync> Flight<'a, V> {
    /// The key this flight computes.
    pub fn key(&self) -> CacheKey {
        self.key
    }

    /// Whether this flight leads the key's computation (false for a waiter that timed out).
    pub fn is_leader(&self) -> bool {
        self.cell.is_some()
    }

    /// Stores `value` (if it fits the cache; counted in `inserts` or `rejected_too_big`),
    /// hands it to every caller waiting for this computation, and returns it.
    pub fn complete(mut self, value: V) -> V {
        // The weigher is user code: it runs before any lock, and if it panics the flight is
        // dropped, which wakes the waiters.
        let weight_bytes = (self.cache.weigher)(&value);
        let cache = self.cache;
        cache.finish_flight(&mut self, value, weight_bytes)
    }
}

impl<V: Clone + Send + Sync> Drop for Flight<'_, V> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            self.cache.abandon_flight(self.key, &cell);
        }
    }
}

impl<V: Clone + Send + Sync> fmt::Debug for Flight<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flight")
            .field("key", &self.key)
            .field("leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}
