//! [`ExecutorBuilder`]: an executor's configuration, its pool and its clock.

use std::fmt;
use std::marker::PhantomData;

use flujo_core::context::Context;

use super::{BuildError, Executor};
use crate::cache::Weigher;
use crate::clock::RuntimeClock;
use crate::config::OptimizationConfig;
use crate::monitor::{AlertEvent, OnAlert};

/// Builds an [`Executor`]: the configuration, and optionally the rayon pool it runs on, the
/// clock it reads and how its result cache weighs outputs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_core::graph::{Clock, Graph};
/// use flujo_core::interp::Outcome;
/// use flujo_core::graph::ManualClock;
/// use flujo_runtime::clock::ticks;
/// use flujo_runtime::config::OptimizationConfig;
/// use flujo_runtime::{Executor, RunSpec};
///
/// let clock = ManualClock::new(0);
/// let g = Graph::<u64, ()>::build(|b| {
///     let c = clock.clone();
///     let slow = b.task("slow", move |x, _| {
///         c.advance(ticks(Duration::from_millis(5))); // the step "takes" 5 ms of the manual clock
///         Ok(x + 1)
///     });
///     let next = b.task("next", |x, _| Ok(x * 2));
///     b.sequence("s", &[slow, next])
/// })
/// .unwrap();
/// let ex = Executor::builder(OptimizationConfig::throughput())
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// let spec = RunSpec::default().deadline(Duration::from_millis(1));
/// let outcome = ex.run_with(&g, 1, (), &spec, |r| r.outcome).unwrap();
/// assert_eq!(outcome, Outcome::Aborted, "`next` would start after the deadline");
/// assert_eq!(ex.clock().now(), 5_000_000);
/// ```
pub struct ExecutorBuilder<P, C> {
    config: OptimizationConfig,
    pool: Option<rayon::ThreadPool>,
    clock: RuntimeClock,
    /// `None`: the cache weighs every output as `size_of::<P>()`.
    cache_weigher: Option<Weigher<P>>,
    on_alert: Option<OnAlert>,
    on_health: Option<super::degrade::OnHealth>,
    on_selection: Option<super::select::OnSelection>,
    types: PhantomData<fn(P, C)>,
}

impl<P, C> fmt::Debug for ExecutorBuilder<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBuilder")
            .field("config", &self.config)
            .field("pool", &self.pool.as_ref().map(|p| p.current_num_threads()))
            .field("clock", &self.clock)
            .field("cache_weigher", &self.cache_weigher.is_some())
            .field("on_alert", &self.on_alert.is_some())
            .field("on_health", &self.on_health.is_some())
            .field("on_selection", &self.on_selection.is_some())
            .finish()
    }
}

impl<P, C> ExecutorBuilder<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    pub(super) fn new(config: OptimizationConfig) -> Self {
        Self {
            config,
            pool: None,
            clock: RuntimeClock::default(),
            cache_weigher: None,
            on_alert: None,
            on_health: None,
            on_selection: None,
            types: PhantomData,
        }
    }

    /// Runs on `pool` instead of a pool of its own of `config.workers` threads (which is then
    /// not read).
    pub fn pool(mut self, pool: rayon::ThreadPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Reads time from `clock` (default: the monotonic [`MonoClock`](crate::clock::MonoClock)).
    /// A [`ManualClock`](flujo_core::graph::ManualClock) lets a test drive breakers, timeouts,
    /// deadlines and cache expiry by hand.
    pub fn clock(mut self, clock: impl Into<RuntimeClock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Weighs the outputs the result cache stores with `weigher` (bytes), so that
    /// `result_cache.max_bytes` bounds what the host counts, e.g. a `Vec`'s heap bytes.
    /// Default: `size_of::<P>()` for every output, which counts none of what an output owns.
    ///
    /// An output heavier than its shard's share of `max_bytes` (`max_bytes / shards`) is not
    /// stored: a later run of the same input computes it again. The weigher runs once per
    /// computed output of a cacheable step, outside the cache's locks; it should not panic.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::graph::{Graph, TaskConfig};
    /// use flujo_core::cache::StepFingerprint;
    /// use flujo_runtime::config::OptimizationConfig;
    /// use flujo_runtime::Executor;
    ///
    /// let g = Graph::<Vec<u8>, ()>::build(|b| {
    ///     let fp = StepFingerprint::builder("copy", 1).build();
    ///     b.task_with("copy", |v: Vec<u8>, _: &mut _| Ok(v), TaskConfig::new().cacheable(fp))
    /// })
    /// .unwrap();
    /// let ex = Executor::builder(OptimizationConfig::low_memory())
    ///     .cache_weigher(|v: &Vec<u8>| v.len())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(ex.run(&g, vec![7; 16], ()).unwrap().output, Some(vec![7; 16]));
    /// ```
    pub fn cache_weigher(mut self, weigher: impl Fn(&P) -> usize + Send + Sync + 'static) -> Self {
        self.cache_weigher = Some(Box::new(weigher));
        self
    }

    /// Calls `f` with every alert event the monitor raises (a rule firing or resolving: see
    /// [`AlertRule`](crate::config::AlertRule)), on the thread that closed the bucket (a run's
    /// end or a read), after the monitor's lock is let go. Keep it short: hand the event to a
    /// channel or a log.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use flujo_runtime::{config::OptimizationConfig, Executor};
    ///
    /// let (tx, rx) = mpsc::sync_channel(64);
    /// let exec = Executor::<u64, ()>::builder(OptimizationConfig::latency())
    ///     .on_alert(move |e| drop(tx.try_send(e.clone())))
    ///     .build()
    ///     .unwrap();
    /// assert!(rx.try_recv().is_err()); // no rules, no alerts
    /// # drop(exec);
    /// ```
    pub fn on_alert(mut self, f: impl Fn(&AlertEvent) + Send + Sync + 'static) -> Self {
        self.on_alert = Some(std::sync::Arc::new(f));
        self
    }

    /// Calls `f` with every move of the executor's health (see
    /// [`DegradationConfig`](crate::config::DegradationConfig)): from, to, the triggers, and
    /// the actions taken and undone. Called like [`on_alert`](Self::on_alert)'s callback, after
    /// the actions are in force.
    pub fn on_health(
        mut self,
        f: impl Fn(&crate::monitor::health::HealthEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_health = Some(std::sync::Arc::new(f));
        self
    }

    /// Calls `f` with every flip of performance-based selection: a step's automatic cache
    /// bypass taken or undone (see [`CacheBypass`](crate::config::CacheBypass)). Called on
    /// the thread of the run whose lookup completed the judged window (or of `reconfigure`),
    /// with no lock of the executor held; keep it short.
    pub fn on_selection(
        mut self,
        f: impl Fn(&crate::monitor::health::SelectionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_selection = Some(std::sync::Arc::new(f));
        self
    }

    /// The executor.
    ///
    /// # Errors
    /// [`BuildError::Config`] when the configuration is invalid, [`BuildError::Pool`] when
    /// its own pool cannot be built.
    pub fn build(self) -> Result<Executor<P, C>, BuildError> {
        self.config.validate().map_err(BuildError::Config)?;
        let pool = match self.pool {
            Some(pool) => pool,
            None => rayon::ThreadPoolBuilder::new()
                .num_threads(self.config.workers)
                .thread_name(|i| format!("flujo-{i}"))
                .build()
                .map_err(BuildError::Pool)?,
        };
        Executor::build(
            self.config,
            pool,
            self.clock,
            self.cache_weigher,
            self.on_alert,
            self.on_health,
            self.on_selection,
        )
    }
}
