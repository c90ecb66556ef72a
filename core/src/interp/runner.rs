//! [`Runner`]: owns a run's scratch and runs graphs (and forked branches) with it.

use alloc::vec::Vec;

use super::config::{RunOptions, RunnerConfig};
use super::exec::Exec;
use super::host::{BranchOut, Fan, Host, Inline, Lane};
use super::records::{Records, StepRecord};
use super::results::{Outcome, RunError, RunResult};
use super::scratch::Scratch;
use super::telemetry::Telemetry;
use crate::arena::RunArena;
use crate::cache::FixedCache;
use crate::context::{Context, Frame, Spares};
use crate::graph::{Cancel, Clock, Graph, NodeId, RunEnv};
use crate::policy::{Rng, UsageBudget};
use crate::telemetry::{Counter, EventSink, NullSink};

/// Runs graphs on the calling thread, reusing its scratch memory run after run.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, ManualClock};
/// use flujo_core::interp::{Runner, RunnerConfig, RunOptions, Outcome};
///
/// let g = Graph::<u64, ()>::build(|b| {
///     let steps: Vec<_> = (0..100).map(|i| b.task(&format!("s{i}"), |x, _| Ok(x + 1))).collect();
///     b.sequence("chain", &steps)
/// })
/// .unwrap();
/// let mut runner = Runner::new(RunnerConfig::default());
/// let clock = ManualClock::new(0);
/// for _ in 0..3 {
///     let r = runner.run(&g, 0, (), &clock, &RunOptions::default());
///     assert_eq!((r.outcome, r.output, r.records.len()), (Outcome::Succeeded, Some(100), 100));
/// }
/// ```
#[derive(Debug)]
pub struct Runner<P, C, S = NullSink> {
    scratch: Scratch<P, C>,
    /// The per-run arena the step records live in (reset at the start of each run).
    arena: RunArena,
    max_records: usize,
    telemetry: Option<Telemetry<S>>,
}

impl<P: Clone, C: Context> Runner<P, C> {
    /// A runner with scratch sized by `config` (records and spares presized), telemetry off.
    pub fn new(config: RunnerConfig) -> Self {
        Self::build(config, None)
    }
}

impl<P: Clone, C: Context, S: EventSink> Runner<P, C, S> {
    /// A runner with per-step telemetry (see [`Telemetry`]).
    pub fn with_telemetry(config: RunnerConfig, telemetry: Telemetry<S>) -> Self {
        Self::build(config, Some(telemetry))
    }

    /// A runner with per-step telemetry when `telemetry` is given, else without (a host
    /// that picks at run time keeps one runner type either way).
    pub fn build(config: RunnerConfig, telemetry: Option<Telemetry<S>>) -> Self {
        // Exactly the records' bytes, allocated up front: a run never grows the arena.
        let bytes = config
            .max_records
            .checked_mul(core::mem::size_of::<StepRecord>())
            .expect("max_records fits in memory");
        let arena =
            RunArena::with_capacity_and_limit(bytes, bytes).expect("the record arena is allocated");
        Self {
            arena,
            max_records: config.max_records,
            scratch: Scratch {
                spares: Spares::new(config.max_spare_contexts),
                items: Vec::new(),
                cache: (config.cache_capacity > 0).then(|| {
                    FixedCache::new(config.cache_capacity).expect("a valid cache capacity")
                }),
                rng: Rng::new(config.seed),
                shares: Vec::new(),
                error: None,
                record_bufs: Vec::new(),
                fan_bufs: Vec::new(),
                flag_bufs: Vec::new(),
                fast_paths: config.fast_paths,
                copy_on_write: config.copy_on_write,
                breakers: config.breakers,
            },
            telemetry,
        }
    }

    /// Runs `graph` on `input` with context `ctx`, reading time from `clock`, on the calling
    /// thread.
    pub fn run<'r, K: Clock>(
        &'r mut self,
        graph: &'r Graph<P, C>,
        input: P,
        ctx: C,
        clock: &K,
        opts: &RunOptions<'_>,
    ) -> RunResult<'r, P, C> {
        self.run_in(graph, input, ctx, clock, opts, &Inline)
    }

    /// Runs `graph` like [`run`](Self::run), in `host`: the host guards every attempt, may
    /// fork fan-outs onto other threads and may share a result cache (see [`Host`]). The
    /// results are the ones [`run`](Self::run) gives, but for the order of side effects of
    /// forked branches and the steps of siblings a failure cancelled.
    pub fn run_in<'r, K: Clock, H: Host<P, C, K>>(
        &'r mut self,
        graph: &'r Graph<P, C>,
        input: P,
        ctx: C,
        clock: &K,
        opts: &RunOptions<'_>,
        host: &H,
    ) -> RunResult<'r, P, C> {
        self.arena.reset();
        let records = Records::new(&self.arena, self.max_records);
        let s = &mut self.scratch;
        s.error = None;
        debug_assert!(
            s.items.is_empty(),
            "map items are popped before a map returns"
        );
        s.items.clear();
        let mut frame = Frame::Owned(ctx);
        let cancel = opts.cancel.map(|flag| Cancel { flag, up: None });
        let env = RunEnv::new(clock, opts.deadline.unwrap_or(u64::MAX), cancel.as_ref());
        let budget = opts
            .budget
            .map_or(UsageBudget::unlimited(), UsageBudget::with_max);
        let limited = opts.budget.is_some();
        let tel = self.telemetry.as_mut().filter(|t| !t.paused);
        let mut ex = Exec::new(graph, clock, host, env, budget, limited, tel, s, records);
        let result = ex.node(graph.root, input, &mut frame);
        let (usage, counters, records) = (ex.usage, ex.counters, ex.records);
        debug_assert_eq!(
            counters.get(Counter::StepsRun),
            [
                Counter::StepsSucceeded,
                Counter::StepsFailed,
                Counter::StepsSkipped,
                Counter::StepsAborted
            ]
            .iter()
            .map(|&c| counters.get(c))
            .sum::<u64>(),
            "every step run has one outcome"
        );
        if let Some(tel) = &mut self.telemetry {
            tel.flush_latency();
            tel.counters.add(&counters);
        }
        let context = match frame {
            Frame::Owned(c) => c,
            Frame::Borrowed(_) | Frame::Copied(_) => unreachable!("the top frame is owned"),
        };
        let s = &mut self.scratch;
        let (output, outcome, error) = match result {
            Ok(out) => (Some(out), Outcome::Succeeded, None),
            Err(stop) => {
                let kind = s.error.take().expect("every stop leaves its reason");
                debug_assert_eq!(kind.class(), stop.class, "the reason is the stop's");
                let error = RunError {
                    node: NodeId(stop.node),
                    step: graph.name(NodeId(stop.node)),
                    kind,
                };
                let outcome = if stop.abort {
                    Outcome::Aborted
                } else {
                    Outcome::Failed
                };
                (None, outcome, Some(error))
            }
        };
        RunResult {
            output,
            outcome,
            error,
            context,
            records_dropped: records.dropped,
            records: records.into_slice(),
            usage,
            counters,
        }
    }

    /// The arena the step records of a run live in (reset at the start of each run).
    pub fn arena(&self) -> &RunArena {
        &self.arena
    }

    /// Entries in the runner's step cache.
    pub fn cached_entries(&self) -> usize {
        self.scratch.cache.as_ref().map_or(0, FixedCache::len)
    }

    /// The runner's telemetry, when it was made with [`with_telemetry`](Self::with_telemetry).
    pub fn telemetry(&self) -> Option<&Telemetry<S>> {
        self.telemetry.as_ref()
    }

    /// The runner's telemetry, mutably (to drain its sink).
    pub fn telemetry_mut(&mut self) -> Option<&mut Telemetry<S>> {
        self.telemetry.as_mut()
    }
}

impl<P: Clone, C: Context, K: Clock, H: Host<P, C, K>> Fan<'_, P, C, K, H> {
    /// Runs `branch` on `runner`'s scratch (its arena is reset, as by a run). A branch runs
    /// once; a second call does nothing.
    pub fn run<S: EventSink>(&self, branch: &mut Lane<P, C>, runner: &mut Runner<P, C, S>) {
        let Some(input) = branch.input.take() else {
            return;
        };
        let chain = Cancel {
            flag: &self.flags[branch.index],
            up: self.cancel,
        };
        let env = RunEnv::new(self.clock, self.deadline, Some(&chain));
        let out = runner.run_branch(self, branch, input, env);
        if let Err((stop, _)) = &out.result {
            if stop.abort || self.stop_later {
                for later in &self.flags[branch.index + 1..] {
                    later.cancel();
                }
            }
        }
        branch.out = Some(out);
    }
}

impl<P: Clone, C: Context, S: EventSink> Runner<P, C, S> {
    /// The body of [`Fan::run`]: a run of the branch's node on this runner's scratch.
    fn run_branch<K: Clock, H: Host<P, C, K>>(
        &mut self,
        fan: &Fan<'_, P, C, K, H>,
        b: &mut Lane<P, C>,
        input: P,
        env: RunEnv<'_>,
    ) -> BranchOut<P, C> {
        self.arena.reset();
        let records = Records::new(&self.arena, self.max_records);
        let s = &mut self.scratch;
        s.error = None;
        let mut frame = if s.copy_on_write {
            Frame::Borrowed(fan.base)
        } else {
            Frame::Copied(s.spares.copy_of(fan.base))
        };
        let budget = core::mem::replace(&mut b.budget, UsageBudget::unlimited());
        let tel = self.telemetry.as_mut().filter(|_| fan.telemetry);
        let (g, clock, host, limited) = (fan.g, fan.clock, fan.host, fan.limited);
        let mut ex = Exec::new(g, clock, host, env, budget, limited, tel, s, records);
        let result = ex.node(b.node, input, &mut frame);
        let (usage, counters, records) = (ex.usage, ex.counters, ex.records);
        b.budget = ex.budget;
        if let Some(t) = &mut self.telemetry {
            t.flush_latency();
        }
        let dropped = records.dropped;
        b.records.clear();
        b.records.extend_from_slice(records.into_slice());
        let result = result.map_err(|stop| {
            let kind = self
                .scratch
                .error
                .take()
                .expect("every stop leaves its reason");
            (stop, kind)
        });
        let context = match frame {
            Frame::Owned(c) => Some(c),
            Frame::Borrowed(_) => None,
            Frame::Copied(c) => {
                self.scratch.spares.give(c);
                None
            }
        };
        BranchOut {
            result,
            context,
            usage,
            counters,
            dropped,
        }
    }
}
