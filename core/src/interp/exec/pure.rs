//! Pure fan-outs: a parallel node whose subtree holds only plain tasks that do not write the
//! context and parallel nodes, run as one loop over its flat program (see [`PureOp`]).
//!
//! Nothing in such a subtree can write the context, so every branch reads the fan-out's
//! context as it is and merging is a no-op; the run has no budget (so there are no shares)
//! and no telemetry (so no events); and every leaf gets the fan-out's input. What is left of
//! the general path per node is the fold: each branch's output is reduced into its fan-out's
//! accumulator in declaration order, and a failure either ends the fan-out (propagate, or
//! any abort) or is skipped (ignore), exactly as [`Exec::parallel`] does. A fan-out the host
//! forks leaves the loop for the general path.

use super::stretch::PlainFailure;
use super::{stamp, stop_reason, stop_tick, Exec};
use core::mem::size_of;

use crate::context::{Context, Frame, Spares};
use crate::graph::{Clock, NodeId, PureOp, Reduce, StepCx, MAX_DEPTH};
use crate::interp::host::Host;
use crate::interp::records::StepRecord;
use crate::interp::results::{ErrorKind, Stop};
use crate::policy::Usage;
use crate::telemetry::{Counter, EventSink};

/// The largest payload a pure program runs with: its stack of open fan-outs (up to
/// [`MAX_DEPTH`] + 1 accumulators) then stays under 40 KiB of the thread's stack. Larger
/// payloads take the general path.
const MAX_PAYLOAD: usize = 512;

/// A parallel node of a pure program whose branches are under way.
struct OpenFan<'g, P> {
    /// The outputs of its branches that succeeded so far, reduced in declaration order.
    acc: Option<P>,
    reduce: &'g Reduce<P>,
    /// Branches that have not handed up their result yet.
    left: u32,
    /// Its op (which the cold paths read the rest from).
    begin: u32,
}

impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
    /// Whether a pure fan-out may run as its program: the fast paths and copy-on-write are
    /// on (switched off, every node takes the general path), the run has no budget and no
    /// telemetry, and the payload is at most [`MAX_PAYLOAD`] bytes (the stack of open
    /// fan-outs lives on the thread's stack).
    #[inline(always)]
    pub(super) fn pure_ok(&self) -> bool {
        self.s.fast_paths
            && self.s.copy_on_write
            && !self.limited
            && self.tel.is_none()
            && size_of::<P>() <= MAX_PAYLOAD
    }

    /// Runs the program `ops` of a pure fan-out (the fan-out's op first) on `input`, every
    /// leaf reading `base`.
    ///
    /// Leaves are timed like a stretch of plain tasks: one clock read each, a leaf's end is
    /// the next one's start. They share one step context: none may write, so it only ever
    /// carries usage, which is booked after the leaf that reported it.
    pub(super) fn pure_fan(&mut self, ops: &[PureOp], input: P, base: &C) -> Result<P, Stop> {
        let g = self.g;
        let clock = self.clock;
        let host = self.host;
        let env = self.env;
        // A step that may not write never takes a spare copy.
        let mut no_spares = Spares::new(0);
        // Nesting is bounded by the graph's depth.
        let mut open: heapless::Vec<OpenFan<'_, P>, { MAX_DEPTH + 1 }> = heapless::Vec::new();
        let mut leaves = Leaves {
            cx: StepCx::new(base, &mut no_spares, &env, false, 1, None),
            t0: stamp(clock, clock.measures_latency()),
            watch: env.watch,
            succeeded: 0,
        };
        let mut pc = 0usize;
        let result = 'run: loop {
            let op = ops[pc];
            // What the op produced, for its fan-out.
            let mut done: Result<P, Stop> = if op.branches() > 0 {
                let after = pc + op.len as usize;
                let branches = op.branches();
                let forks = branches >= 2
                    && host.forks(NodeId(op.node), branches as usize, g.cost[op.node as usize]);
                let reduce = &g.par_reduce[op.slot as usize];
                if forks {
                    pc = after;
                    let mut frame = Frame::Borrowed(base);
                    let r =
                        self.parallel_forked(op.node, op.slot as usize, input.clone(), &mut frame);
                    debug_assert!(
                        matches!(frame, Frame::Borrowed(_)),
                        "a pure fan-out writes nothing"
                    );
                    leaves.t0 = stamp(clock, clock.measures_latency());
                    r
                } else if op.len == branches + 1 {
                    // Every branch is a leaf: they run here, folded in locals.
                    let mut acc: Option<P> = None;
                    let mut failure = None;
                    for &leaf in &ops[pc + 1..after] {
                        match self.pure_leaf(leaf, &input, &mut leaves) {
                            Ok(out) => {
                                acc = Some(match acc.take() {
                                    None => out,
                                    Some(a) => match reduce.apply(a, out) {
                                        Ok(reduced) => reduced,
                                        Err(e) => {
                                            failure = Some(self.reduce_failed(op.node, e));
                                            break;
                                        }
                                    },
                                });
                            }
                            Err(stop) if stop.abort || op.propagates() => {
                                failure = Some(stop);
                                break;
                            }
                            Err(_) => {}
                        }
                    }
                    pc = after;
                    match (failure, acc) {
                        (Some(stop), _) => Err(stop),
                        (None, Some(out)) => Ok(out),
                        (None, None) => Err(self.all_failed(op)),
                    }
                } else {
                    let entered = open.push(OpenFan {
                        acc: None,
                        reduce,
                        left: branches,
                        begin: pc as u32,
                    });
                    assert!(entered.is_ok(), "validated: nesting depth");
                    pc += 1;
                    continue;
                }
            } else {
                pc += 1;
                self.pure_leaf(op, &input, &mut leaves)
            };
            // Hand `done` to the innermost open fan-out; a fan-out that this closes (its last
            // branch) or ends (a failure under propagate, or an abort) hands up its own.
            loop {
                let Some(top) = open.last_mut() else {
                    break 'run done;
                };
                match done {
                    Ok(out) => {
                        let reduced = match top.acc.take() {
                            None => Ok(out),
                            Some(a) => top.reduce.apply(a, out),
                        };
                        match reduced {
                            Ok(acc) => top.acc = Some(acc),
                            Err(e) => {
                                // The fan-out fails; its branches not yet started never start.
                                let fan = ops[top.begin as usize];
                                pc = top.begin as usize + fan.len as usize;
                                open.pop();
                                done = Err(self.reduce_failed(fan.node, e));
                                continue;
                            }
                        }
                    }
                    Err(stop) if stop.abort || ops[top.begin as usize].propagates() => {
                        // Siblings not yet started are told to stop by never starting.
                        let fan = ops[top.begin as usize];
                        pc = top.begin as usize + fan.len as usize;
                        open.pop();
                        done = Err(stop);
                        continue;
                    }
                    Err(_) => {}
                }
                top.left -= 1;
                if top.left > 0 {
                    break;
                }
                let closed = open.pop().expect("the top fan-out");
                let fan = ops[closed.begin as usize];
                debug_assert_eq!(
                    pc,
                    closed.begin as usize + fan.len as usize,
                    "a closed fan-out ran all its ops"
                );
                done = match closed.acc {
                    Some(out) => Ok(out),
                    None => Err(self.all_failed(fan)),
                };
            }
        };
        let succeeded = leaves.succeeded;
        self.counters.add_n(Counter::StepsRun, succeeded);
        self.counters.add_n(Counter::StepsSucceeded, succeeded);
        result
    }

    /// Runs the leaf `op` of a pure program on a clone of `input`.
    #[inline(always)]
    fn pure_leaf(&mut self, op: PureOp, input: &P, l: &mut Leaves<'_, C>) -> Result<P, Stop> {
        let timed = self.clock.measures_latency();
        let stop = if l.watch {
            stop_reason(&self.env, stop_tick(self.clock, timed, l.t0, &self.env))
        } else {
            None
        };
        if let Some(kind) = stop {
            return Err(self.stopped(op.node, kind));
        }
        let step = &*self.g.task_step[op.slot as usize];
        let r = self.host.guard(|| step.run(input.clone(), &mut l.cx));
        let t1 = stamp(self.clock, timed);
        let latency_ticks = t1.saturating_sub(l.t0);
        l.t0 = t1;
        let usage = if l.cx.touched {
            l.cx.touched = false;
            let usage = core::mem::replace(&mut l.cx.usage, Usage::ZERO);
            self.book(usage);
            usage
        } else {
            Usage::ZERO
        };
        debug_assert!(!l.cx.has_written(), "a step that may not write cannot");
        match r {
            Ok(y) => {
                l.succeeded += 1;
                let rec = StepRecord::plain(op.node, latency_ticks, usage);
                self.records.push(rec);
                Ok(y)
            }
            Err(e) => {
                let why = PlainFailure::Step {
                    e,
                    latency_ticks,
                    usage,
                };
                Err(self.plain_failure(op.node, None, why))
            }
        }
    }

    /// The failure of fan-out `op` when every branch failed (the ignore strategy).
    #[cold]
    fn all_failed(&mut self, op: PureOp) -> Stop {
        let kind = ErrorKind::AllBranchesFailed {
            branches: op.branches(),
        };
        self.fail(op.node, kind, false)
    }
}

/// What the leaves of one pure program share: one step context, the clock chain, whether
/// the run watches a deadline or cancel flag, the count of leaves that succeeded.
struct Leaves<'r, C> {
    cx: StepCx<'r, C>,
    t0: u64,
    watch: bool,
    succeeded: u64,
}
