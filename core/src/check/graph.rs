//! Graph building and running from arbitrary operations, against a model.
//!
//! The bytes decode into a program that builds a graph: tasks with policies (retries,
//! validators, processors, recovery tables, fallbacks, caching, context reads and writes,
//! usage reports), sequences, parallel nodes (every merge strategy, both failure
//! strategies), loops, switches, maps, late fallbacks (`set_fallback`, so cycles can form)
//! and handles from another builder. Nothing in the program is filtered: empty composites,
//! missing bounds, zero widths, fallback cycles and long chains, cacheable
//! writers, skips without a default, nesting beyond [`MAX_DEPTH`] all occur.
//!
//! The model keeps its own copy of the program and checks:
//! - building never panics; it succeeds exactly when the model finds no broken rule, and
//!   otherwise names a node and a rule the model found broken (the first builder-time error
//!   exactly: a foreign handle, a fallback set on a non-task);
//! - a graph that builds runs (twice on one runner, so the second run meets the cache) with
//!   the output, outcome, failing node and error class, final context, usage and number of
//!   step records of a small recursive evaluator written here.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::Bytes;
use crate::cache::StepFingerprint;
use crate::context::{Context, MergeStrategy};
use crate::graph::StepCx;
use crate::graph::{
    FailureStrategy, Graph, GraphBuilder, GraphError, GraphRule, LoopOptions, MapOptions, NoClock,
    NodeRef, ParallelOptions, StepError, TaskConfig, MAX_DEPTH, MAX_FALLBACK_CHAIN,
};
use crate::interp::{Fan, Host, Lane, Outcome, RunOptions, Runner, RunnerConfig};
use crate::policy::{Backoff, ErrorClass, Recovery, RecoveryTable, RetryPolicy, Usage};
use crate::telemetry::Counter;

/// Most operations decoded from one input.
const OPS_MAX: usize = 160;
/// Most task executions a run may take (worst case over every branch) before the program
/// is built but not run.
const WORK_MAX: u64 = 4_000;
/// Context parts.
const PARTS: usize = 3;

/// The context: three independently merged numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ctx([i64; PARTS]);

impl Context for Ctx {
    const PARTS: usize = PARTS;
    fn part_name(index: usize) -> &'static str {
        ["p0", "p1", "p2"][index]
    }
    fn part_eq(&self, other: &Self, index: usize) -> bool {
        self.0[index] == other.0[index]
    }
    fn copy_part(&mut self, from: &Self, index: usize) {
        self.0[index] = from.0[index];
    }
}

// ---- The program ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Merge {
    None,
    Overwrite,
    KeepFirst,
    Conflict,
    /// A user merge adding each branch's change of every part.
    Sum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Default,
    PermanentSkips,
    TransientFails,
    ValidationRetries,
}

/// What a task does; every number small so runs stay readable.
#[derive(Clone, Debug)]
struct TaskSpec {
    mul: i64,
    add: i64,
    /// The step fails when its input is a multiple of this (0: never) ...
    fail_mod: i64,
    /// ... on attempts up to this one.
    fail_attempts: u32,
    fail_class: ErrorClass,
    /// Writes its input into this part (before failing, so a failed attempt's write must be
    /// discarded).
    write: Option<usize>,
    /// Adds this part (as it sees it, its own write included) to its output.
    read: Option<usize>,
    /// Reports one cost unit per attempt.
    usage: bool,
    /// A pre-processor adding 1, a post-processor doubling.
    pre: bool,
    post: bool,
    /// A validator rejecting outputs that are multiples of this (0: none).
    validate_mod: i64,
    attempts_max: u32,
    table: Table,
    default_output: Option<i64>,
    /// Node index of the fallback (set at creation or by `set_fallback`).
    fallback: Option<usize>,
    cacheable: bool,
}

#[derive(Clone, Debug)]
enum Kind {
    Task(TaskSpec),
    Seq(Vec<usize>),
    Par {
        branches: Vec<usize>,
        merge: Merge,
        ignore: bool,
        zero_width: bool,
    },
    Loop {
        body: usize,
        bound: u32,
        exit_above: Option<i64>,
    },
    Switch {
        arms: Vec<(u64, usize)>,
        default: Option<usize>,
    },
    Map {
        body: usize,
        items_max: u32,
        zero_width: bool,
        merge: Merge,
    },
}

#[derive(Clone, Debug)]
struct Node {
    name: String,
    kind: Kind,
}

/// A failed run as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fail {
    node: usize,
    class: ErrorClass,
    abort: bool,
}

/// The model's account of a run.
#[derive(Debug, Default)]
struct Tally {
    /// Step records: one per task execution and one per loop.
    records: u64,
    /// Task executions (the runner's `steps_run`).
    tasks: u64,
    retries: u64,
    fallbacks: u64,
    cost: u64,
    /// Whether a fan-out stopped before its last branch (a forked one runs them all).
    cut_short: bool,
}

fn wrap_reduce(a: i64, x: i64) -> i64 {
    a.wrapping_mul(31).wrapping_add(x)
}

/// Decodes a task. Choices that break a build rule take one rare byte value each, so most
/// programs build and run (the fuzzer finds the rare values by comparison tracing).
fn task_spec(bytes: &mut Bytes<'_>, tasks: &[usize], nodes: usize) -> TaskSpec {
    let (b1, b2, b3, b4, b5) = (
        bytes.next(),
        bytes.next(),
        bytes.next(),
        bytes.next(),
        bytes.next(),
    );
    let class = [
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Usage,
    ][usize::from(b2 / 18 % 5)];
    let part = |v: u8| (usize::from(v) < PARTS).then_some(usize::from(v));
    let cacheable = b5 & 0x80 != 0;
    let table = [
        Table::Default,
        Table::PermanentSkips,
        Table::TransientFails,
        Table::ValidationRetries,
    ][usize::from(b4 / 20 % 4)];
    // A fallback to another task (or, rarely, to any node).
    let fallback = match b5 % 4 {
        0 if b5 == 0 && nodes > 0 => Some(usize::from(b2) % nodes),
        0 if !tasks.is_empty() => Some(tasks[usize::from(b5 / 4) % tasks.len()]),
        _ => None,
    };
    TaskSpec {
        mul: i64::from(b1 % 3) + 1,
        add: i64::from(b1 / 3 % 7) - 3,
        fail_mod: [0, 0, 2, 3, 5, 7][usize::from(b2 % 6)],
        fail_attempts: [1, 2, u32::MAX][usize::from(b2 / 6 % 3)],
        fail_class: class,
        // A cacheable task that writes is a build error: only for one value of `b3`.
        write: part(b3 % 4).filter(|_| !cacheable || b3 == 0xFC),
        // A cacheable task's output must be a function of its input alone.
        read: part(b3 / 4 % 4).filter(|_| !cacheable),
        usage: b3 & 0x10 != 0 && !cacheable,
        pre: b3 & 0x20 != 0,
        post: b3 & 0x40 != 0,
        validate_mod: [0, 0, 3, 4][usize::from(b4 / 5 % 4)],
        // A cache hit skips the retries a miss would make: cacheable tasks make one attempt,
        // so the counts do not depend on which executions hit.
        attempts_max: if cacheable {
            1
        } else {
            [1, 1, 2, 3][usize::from(b4 % 4)]
        },
        table,
        // Skipping without a default output is a build error: only for one value of `b1`.
        default_output: (table != Table::PermanentSkips || b1 != 0xFF).then_some(i64::from(b1)),
        fallback,
        cacheable,
    }
}

/// A number of children in `1 ..= max`, or 0 (a build error) for `b == 0`.
fn count(b: u8, max: u8) -> usize {
    if b == 0 {
        0
    } else {
        usize::from(b % max) + 1
    }
}

fn merge_of(b: u8) -> Merge {
    [
        Merge::None,
        Merge::Overwrite,
        Merge::KeepFirst,
        Merge::Conflict,
        Merge::Sum,
    ][usize::from(b % 5)]
}

/// A program: its nodes, late fallbacks, the first builder-time error, the root.
struct Program {
    nodes: Vec<Node>,
    /// Builder-time errors in program order (the builder keeps the first).
    early: Vec<(String, GraphRule)>,
    root: usize,
    input: i64,
}

/// The operations, applied to the builder and recorded in the program as they go.
fn build_program(
    bytes: &mut Bytes<'_>,
    b: &mut GraphBuilder<'_, i64, Ctx>,
    other: &mut GraphBuilder<'_, i64, Ctx>,
) -> (Program, NodeRef) {
    let mut p = Program {
        nodes: Vec::new(),
        early: Vec::new(),
        root: 0,
        input: i64::from(bytes.next() as i8),
    };
    let mut refs: Vec<NodeRef> = Vec::new();
    let mut explicit_root = None;
    let mut tasks: Vec<usize> = vec![0];
    // The first node is a plain task, so every pick has something to pick.
    let first = TaskSpec {
        mul: 1,
        add: 1,
        fail_mod: 0,
        fail_attempts: 0,
        fail_class: ErrorClass::Permanent,
        write: None,
        read: None,
        usage: false,
        pre: false,
        post: false,
        validate_mod: 0,
        attempts_max: 1,
        table: Table::Default,
        default_output: None,
        fallback: None,
        cacheable: false,
    };
    refs.push(add_task(b, "n0", &first, &refs));
    p.nodes.push(Node {
        name: "n0".into(),
        kind: Kind::Task(first),
    });
    for _ in 0..OPS_MAX {
        if bytes.is_empty() {
            break;
        }
        let op = bytes.next();
        let n = p.nodes.len();
        let name = format!("n{n}");
        let pick = |v: u8| usize::from(v) % n;
        let (kind, node_ref) = match op % 9 {
            0 | 1 => {
                let spec = task_spec(bytes, &tasks, n);
                let r = add_task(b, &name, &spec, &refs);
                (Kind::Task(spec), r)
            }
            2 => {
                let k = count(bytes.next(), 4);
                let kids: Vec<usize> = (0..k).map(|_| pick(bytes.next())).collect();
                let r: Vec<NodeRef> = kids.iter().map(|&i| refs[i]).collect();
                (Kind::Seq(kids), b.sequence(&name, &r))
            }
            3 => {
                let k = count(bytes.next(), 3);
                let branches: Vec<usize> = (0..k).map(|_| pick(bytes.next())).collect();
                let flags = bytes.next();
                let (merge, ignore, zero_width) = (merge_of(flags), flags & 8 != 0, flags == 0xFF);
                let mut opts = ParallelOptions::new()
                    .merge(strategy(merge))
                    .failure(if ignore {
                        FailureStrategy::Ignore
                    } else {
                        FailureStrategy::Propagate
                    });
                if zero_width {
                    opts = opts.max_width(0);
                } else if flags & 16 != 0 {
                    opts = opts.max_width(1);
                }
                let r: Vec<NodeRef> = branches.iter().map(|&i| refs[i]).collect();
                let node_ref = b.parallel(&name, &r, wrap_reduce, opts);
                (
                    Kind::Par {
                        branches,
                        merge,
                        ignore,
                        zero_width,
                    },
                    node_ref,
                )
            }
            4 => {
                let body = pick(bytes.next());
                let flags = bytes.next();
                // No bound (or a bound of 0) is a build error: only for flags 0 and 0xFF.
                let bound = if flags == 0 || flags == 0xFF {
                    0
                } else {
                    u32::from(flags % 3) + 1
                };
                let exit_above = (flags & 4 != 0).then_some(i64::from(flags >> 3) * 4);
                let mut opts = LoopOptions::new();
                if flags != 0 {
                    opts = opts.max_iterations(bound);
                }
                if let Some(t) = exit_above {
                    opts = opts.until(move |x, _, _| *x > t);
                }
                let node_ref = b.loop_(&name, refs[body], opts);
                (
                    Kind::Loop {
                        body,
                        bound,
                        exit_above,
                    },
                    node_ref,
                )
            }
            5 => {
                let v = bytes.next();
                let k = count(v, 3);
                // Keys in a row from `v`; the same key twice only for `v == 0xFF`.
                let arms: Vec<(u64, usize)> = (0..k)
                    .map(|j| {
                        let key = if v == 0xFF {
                            0
                        } else {
                            (u64::from(v / 4) + j as u64) % 5
                        };
                        (key, pick(bytes.next()))
                    })
                    .collect();
                let d = bytes.next();
                let default = (d & 1 != 0).then(|| pick(d >> 1));
                let r: Vec<(u64, NodeRef)> = arms.iter().map(|&(k, i)| (k, refs[i])).collect();
                let node_ref = b.switch(
                    &name,
                    |x, _| x.rem_euclid(5) as u64,
                    &r,
                    default.map(|i| refs[i]),
                );
                (Kind::Switch { arms, default }, node_ref)
            }
            6 => {
                let body = pick(bytes.next());
                let flags = bytes.next();
                let items_max = if flags == 0 || flags == 0xFE {
                    0
                } else {
                    u32::from(flags % 4).max(1)
                };
                let (zero_width, merge) = (flags == 0xFF, merge_of(flags >> 2));
                let mut opts = MapOptions::new().merge(strategy(merge));
                if flags != 0 {
                    opts = opts.max_items(items_max);
                }
                if zero_width {
                    opts = opts.max_width(0);
                }
                let node_ref = b.map(
                    &name,
                    |x, _, items| {
                        for i in 0..x.rem_euclid(4) {
                            if items.push(x.wrapping_add(i)).is_err() {
                                break;
                            }
                        }
                        Ok(0)
                    },
                    refs[body],
                    wrap_reduce,
                    opts,
                );
                (
                    Kind::Map {
                        body,
                        items_max,
                        zero_width,
                        merge,
                    },
                    node_ref,
                )
            }
            7 => {
                // A late fallback from a task (rarely from any node) to a task (rarely to any
                // node): may make cycles and long chains.
                let (v, w) = (bytes.next(), bytes.next());
                let task = if v == 0xFF || tasks.is_empty() {
                    pick(w)
                } else {
                    tasks[usize::from(v) % tasks.len()]
                };
                // Mostly to a task without a fallback of its own (no cycle can form); to
                // any task (cycles, long chains) for `w >= 0xF0`, to any node for `0xFF`.
                let leaves: Vec<usize> = tasks
                    .iter()
                    .copied()
                    .filter(|&t| {
                        t != task
                            && matches!(&p.nodes[t].kind, Kind::Task(s) if s.fallback.is_none())
                    })
                    .collect();
                let fb = match w {
                    0xFF => pick(v),
                    0xF0.. => tasks[usize::from(w) % tasks.len()],
                    _ if leaves.is_empty() => tasks[usize::from(w) % tasks.len()],
                    _ => leaves[usize::from(w) % leaves.len()],
                };
                b.set_fallback(refs[task], refs[fb]);
                match &mut p.nodes[task].kind {
                    Kind::Task(spec) => spec.fallback = Some(fb),
                    _ => {
                        let rule = GraphRule::FallbackNotTask;
                        p.early.push((p.nodes[task].name.clone(), rule));
                    }
                }
                continue;
            }
            _ => {
                let v = bytes.next();
                if v < 0x10 {
                    // The root is the last node made, unless chosen here.
                    explicit_root = Some(pick(bytes.next()));
                    continue;
                }
                if v != 0xFF {
                    continue;
                }
                // A sequence holding a handle from another builder.
                let foreign = other.task("foreign", |x, _| Ok(x));
                let node_ref = b.sequence(&name, &[foreign]);
                p.early.push((name.clone(), GraphRule::ForeignHandle));
                (Kind::Seq(vec![0]), node_ref)
            }
        };
        if matches!(kind, Kind::Task(_)) {
            tasks.push(n);
        }
        refs.push(node_ref);
        p.nodes.push(Node { name, kind });
    }
    p.root = explicit_root.unwrap_or(p.nodes.len() - 1);
    let root = refs[p.root];
    (p, root)
}

fn strategy(m: Merge) -> MergeStrategy<Ctx> {
    match m {
        Merge::None => MergeStrategy::NoMerge,
        Merge::Overwrite => MergeStrategy::Overwrite,
        Merge::KeepFirst => MergeStrategy::KeepFirst,
        Merge::Conflict => MergeStrategy::ErrorOnConflict,
        Merge::Sum => {
            MergeStrategy::User(Box::new(|merged: &mut Ctx, base: &Ctx, branch: &Ctx| {
                for p in 0..PARTS {
                    let delta = branch.0[p].wrapping_sub(base.0[p]);
                    merged.0[p] = merged.0[p].wrapping_add(delta);
                }
                Ok(())
            }))
        }
    }
}

fn table_of(t: Table) -> RecoveryTable {
    let d = RecoveryTable::DEFAULT;
    match t {
        Table::Default => d,
        Table::PermanentSkips => d.with(ErrorClass::Permanent, Recovery::Skip),
        Table::TransientFails => d.with(ErrorClass::Transient, Recovery::Fail),
        Table::ValidationRetries => d.with(ErrorClass::Validation, Recovery::Retry),
    }
}

fn add_task(
    b: &mut GraphBuilder<'_, i64, Ctx>,
    name: &str,
    spec: &TaskSpec,
    refs: &[NodeRef],
) -> NodeRef {
    let mut cfg = TaskConfig::new()
        .retry(
            RetryPolicy::new(spec.attempts_max, Backoff::Constant { delay_ticks: 1 })
                .expect("1 ..= 3 attempts"),
        )
        .recovery(table_of(spec.table));
    if spec.write.is_some() {
        cfg = cfg.writes_context();
    }
    if spec.pre {
        cfg = cfg.pre(|x: i64, _| Ok(x.wrapping_add(1)));
    }
    if spec.post {
        cfg = cfg.post(|y: i64, _| Ok(y.wrapping_mul(2)));
    }
    if let Some(d) = spec.default_output {
        cfg = cfg.default_output(d);
    }
    if let Some(fb) = spec.fallback {
        cfg = cfg.fallback(refs[fb]);
    }
    if spec.cacheable {
        cfg = cfg.cacheable(StepFingerprint::builder("check", refs.len() as u32).build());
    }
    let s = spec.clone();
    let step = move |x: i64, cx: &mut StepCx<'_, Ctx>| {
        if s.usage {
            cx.report_usage(Usage { cost: 1, tokens: 0 });
        }
        if let Some(p) = s.write {
            cx.ctx_mut()?.0[p] = x;
        }
        if s.fail_mod != 0 && x.rem_euclid(s.fail_mod) == 0 && cx.attempt() <= s.fail_attempts {
            return Err(StepError::new(s.fail_class, "multiple"));
        }
        let read = s.read.map_or(0, |p| cx.ctx().0[p]);
        Ok(x.wrapping_mul(s.mul).wrapping_add(s.add).wrapping_add(read))
    };
    let m = spec.validate_mod;
    let check = move |y: &i64, _: &Ctx| {
        if y.rem_euclid(m) == 0 {
            Err(StepError::validation("multiple"))
        } else {
            Ok(())
        }
    };
    // Both forms of a validator: typed (compiled into the step unless a post-processor
    // runs between them) for an odd modulus, boxed for an even one.
    match m {
        0 => b.task_with(name, step, cfg),
        m if m % 2 != 0 => b.task_with(name, step, cfg.validate(check)),
        _ => b.task_with(name, step, cfg.validate_boxed(check)),
    }
}

// ---- Build rules, as the model sees them ---------------------------------------------------

fn children(kind: &Kind) -> Vec<usize> {
    match kind {
        Kind::Task(_) => Vec::new(),
        Kind::Seq(k) => k.clone(),
        Kind::Par { branches, .. } => branches.clone(),
        Kind::Loop { body, .. } | Kind::Map { body, .. } => vec![*body],
        Kind::Switch { arms, default } => arms
            .iter()
            .map(|&(_, i)| i)
            .chain(default.iter().copied())
            .collect(),
    }
}

/// Every (node, rule) the validation pass can report.
fn broken_rules(p: &Program) -> Vec<(String, GraphRule)> {
    let mut broken = Vec::new();
    let mut depth = vec![0usize; p.nodes.len()];
    for (i, n) in p.nodes.iter().enumerate() {
        // A foreign child counts as nothing (the build fails earlier anyway).
        let deepest = children(&n.kind)
            .iter()
            .filter(|&&c| c < i)
            .map(|&c| depth[c])
            .max()
            .unwrap_or(0);
        depth[i] = deepest + 1;
        if depth[i] > MAX_DEPTH {
            broken.push((n.name.clone(), GraphRule::TooDeep { limit: MAX_DEPTH }));
        }
        let mut rule = |r: GraphRule| broken.push((n.name.clone(), r));
        match &n.kind {
            Kind::Task(t) => {
                if t.cacheable && t.write.is_some() {
                    rule(GraphRule::CacheableWritesContext);
                }
                if t.table == Table::PermanentSkips && t.default_output.is_none() {
                    rule(GraphRule::SkipWithoutDefault);
                }
                let mut chain = vec![i];
                let mut next = t.fallback;
                while let Some(f) = next {
                    let Kind::Task(ft) = &p.nodes[f].kind else {
                        rule(GraphRule::FallbackNotTask);
                        break;
                    };
                    if chain.contains(&f) {
                        rule(GraphRule::FallbackCycle);
                        break;
                    }
                    if chain.len() > MAX_FALLBACK_CHAIN {
                        rule(GraphRule::FallbackChainTooLong {
                            length: chain.len(),
                        });
                        break;
                    }
                    chain.push(f);
                    next = ft.fallback;
                }
            }
            Kind::Seq(k) if k.is_empty() => rule(GraphRule::EmptySequence),
            Kind::Par { branches, .. } if branches.is_empty() => rule(GraphRule::EmptyParallel),
            Kind::Par {
                zero_width: true, ..
            } => rule(GraphRule::ZeroWidth),
            Kind::Loop { bound: 0, .. } => rule(GraphRule::LoopWithoutBound),
            Kind::Switch { arms, .. } => {
                if arms.is_empty() {
                    rule(GraphRule::EmptySwitch);
                }
                for (j, (k, _)) in arms.iter().enumerate() {
                    if arms[..j].iter().any(|(other, _)| other == k) {
                        rule(GraphRule::DuplicateArm { key: *k });
                    }
                }
            }
            Kind::Map { items_max: 0, .. } => rule(GraphRule::MapWithoutBound),
            Kind::Map {
                zero_width: true, ..
            } => rule(GraphRule::ZeroWidth),
            _ => {}
        }
    }
    broken
}

// ---- The reference evaluator ---------------------------------------------------------------

/// Worst-case task executions of running `node` (saturating), memoized.
fn work(p: &Program, node: usize, memo: &mut Vec<Option<u64>>) -> u64 {
    if let Some(w) = memo[node] {
        return w;
    }
    let w = match &p.nodes[node].kind {
        Kind::Task(t) => {
            let own = u64::from(t.attempts_max.max(1));
            match t.fallback {
                // Validated: fallback chains are acyclic and at most ten long.
                Some(f) => own.saturating_add(work(p, f, memo)),
                None => own,
            }
        }
        Kind::Seq(k) | Kind::Par { branches: k, .. } => k
            .iter()
            .fold(0u64, |a, &c| a.saturating_add(work(p, c, memo))),
        Kind::Loop { body, bound, .. } => work(p, *body, memo).saturating_mul(u64::from(*bound)),
        Kind::Switch { arms, default } => arms
            .iter()
            .map(|&(_, c)| c)
            .chain(default.iter().copied())
            .map(|c| work(p, c, memo))
            .max()
            .unwrap_or(0),
        Kind::Map {
            body, items_max, ..
        } => work(p, *body, memo).saturating_mul(u64::from(*items_max)),
    };
    let w = w.saturating_add(1);
    memo[node] = Some(w);
    w
}

#[allow(clippy::needless_range_loop)] // a part indexes three contexts and the flags
fn merge_model(
    m: Merge,
    base: &Ctx,
    merged: &mut Ctx,
    taken: &mut [bool; PARTS],
    branch: &Ctx,
) -> Result<(), ()> {
    for part in 0..PARTS {
        match m {
            Merge::Sum => {
                let delta = branch.0[part].wrapping_sub(base.0[part]);
                merged.0[part] = merged.0[part].wrapping_add(delta);
                continue;
            }
            _ if branch.0[part] == base.0[part] => continue,
            Merge::None => {}
            Merge::Overwrite => merged.0[part] = branch.0[part],
            Merge::KeepFirst if taken[part] => {}
            Merge::Conflict if taken[part] => return Err(()),
            Merge::KeepFirst | Merge::Conflict => merged.0[part] = branch.0[part],
        }
        taken[part] = true;
    }
    Ok(())
}

struct Model<'p> {
    p: &'p Program,
    tally: Tally,
}

impl Model<'_> {
    fn fail(node: usize, class: ErrorClass, abort: bool) -> Fail {
        Fail { node, class, abort }
    }

    /// One attempt of task `node`: `Ok(output)` (its writes committed to `ctx`) or the
    /// class of its failure (its writes discarded).
    fn attempt(&mut self, t: &TaskSpec, x: i64, n: u32, ctx: &mut Ctx) -> Result<i64, ErrorClass> {
        let mut view = ctx.clone();
        let x = if t.pre { x.wrapping_add(1) } else { x };
        if t.usage {
            self.tally.cost += 1;
        }
        if let Some(p) = t.write {
            view.0[p] = x;
        }
        if t.fail_mod != 0 && x.rem_euclid(t.fail_mod) == 0 && n <= t.fail_attempts {
            return Err(t.fail_class);
        }
        let read = t.read.map_or(0, |p| view.0[p]);
        let mut y = x.wrapping_mul(t.mul).wrapping_add(t.add).wrapping_add(read);
        if t.post {
            y = y.wrapping_mul(2);
        }
        if t.validate_mod != 0 && y.rem_euclid(t.validate_mod) == 0 {
            return Err(ErrorClass::Validation);
        }
        *ctx = view;
        Ok(y)
    }

    fn task(&mut self, node: usize, t: &TaskSpec, x: i64, ctx: &mut Ctx) -> Result<i64, Fail> {
        self.tally.records += 1;
        self.tally.tasks += 1;
        let mut n = 1;
        loop {
            let class = match self.attempt(t, x, n, ctx) {
                Ok(y) => return Ok(y),
                Err(class) => class,
            };
            if class.always_aborts() {
                return Err(Self::fail(node, class, true));
            }
            let recovery = table_of(t.table)
                .lookup(class)
                .expect("the aborting classes returned above");
            match recovery {
                Recovery::Retry if n < t.attempts_max => {
                    n += 1;
                    self.tally.retries += 1;
                }
                Recovery::Retry | Recovery::Fallback => {
                    return match t.fallback {
                        Some(f) => {
                            self.tally.fallbacks += 1;
                            self.eval(f, x, ctx)
                        }
                        None => Err(Self::fail(node, class, false)),
                    }
                }
                Recovery::Skip => return Ok(t.default_output.expect("validated")),
                Recovery::Fail => return Err(Self::fail(node, class, false)),
            }
        }
    }

    /// Branches (or items) over a copy each of `ctx`, merged back in order.
    fn fan_out(
        &mut self,
        node: usize,
        runs: &[(usize, i64)],
        merge: Merge,
        ignore: bool,
        mut acc: Option<i64>,
        ctx: &mut Ctx,
    ) -> Result<i64, Fail> {
        let base = ctx.clone();
        let mut merged = base.clone();
        let mut taken = [false; PARTS];
        for (i, &(child, x)) in runs.iter().enumerate() {
            let mut branch = base.clone();
            let last = i + 1 == runs.len();
            match self.eval(child, x, &mut branch) {
                Ok(out) => {
                    if merge_model(merge, &base, &mut merged, &mut taken, &branch).is_err() {
                        self.tally.cut_short |= !last;
                        return Err(Self::fail(node, ErrorClass::Permanent, false));
                    }
                    acc = Some(acc.map_or(out, |a| wrap_reduce(a, out)));
                }
                Err(f) if ignore && !f.abort => {}
                Err(f) => {
                    self.tally.cut_short |= !last;
                    return Err(f);
                }
            }
        }
        let out = acc.ok_or(Self::fail(node, ErrorClass::Permanent, false))?;
        *ctx = merged;
        Ok(out)
    }

    fn eval(&mut self, node: usize, x: i64, ctx: &mut Ctx) -> Result<i64, Fail> {
        let p = self.p;
        match &p.nodes[node].kind {
            Kind::Task(t) => self.task(node, t, x, ctx),
            Kind::Seq(kids) => kids.iter().try_fold(x, |x, &k| self.eval(k, x, ctx)),
            Kind::Par {
                branches,
                merge,
                ignore,
                ..
            } => {
                let runs: Vec<(usize, i64)> = branches.iter().map(|&b| (b, x)).collect();
                self.fan_out(node, &runs, *merge, *ignore, None, ctx)
            }
            Kind::Loop {
                body,
                bound,
                exit_above,
            } => {
                self.tally.records += 1;
                let mut x = x;
                for _ in 0..*bound {
                    x = self.eval(*body, x, ctx)?;
                    if exit_above.is_some_and(|t| x > t) {
                        break;
                    }
                }
                Ok(x)
            }
            Kind::Switch { arms, default } => {
                let key = x.rem_euclid(5) as u64;
                match arms.iter().find(|(k, _)| *k == key).map(|&(_, a)| a) {
                    Some(arm) => self.eval(arm, x, ctx),
                    None => match default {
                        Some(d) => self.eval(*d, x, ctx),
                        None => Err(Self::fail(node, ErrorClass::Permanent, false)),
                    },
                }
            }
            Kind::Map {
                body,
                items_max,
                merge,
                ..
            } => {
                let n = x.rem_euclid(4);
                if n > i64::from(*items_max) {
                    return Err(Self::fail(node, ErrorClass::Permanent, false));
                }
                let runs: Vec<(usize, i64)> = (0..n).map(|i| (*body, x.wrapping_add(i))).collect();
                self.fan_out(node, &runs, *merge, false, Some(0), ctx)
            }
        }
    }
}

// ---- The program run -----------------------------------------------------------------------

fn check_build(p: &Program, built: &Result<Graph<i64, Ctx>, GraphError>) {
    if let Some(first) = p.early.first() {
        let e = built
            .as_ref()
            .expect_err("a builder-time error fails the build");
        assert_eq!(
            (&e.node, &e.rule),
            (&first.0, &first.1),
            "the first builder error"
        );
        return;
    }
    let broken = broken_rules(p);
    match built {
        Ok(_) => assert!(broken.is_empty(), "built despite {broken:?}"),
        Err(e) => assert!(
            broken.iter().any(|(n, r)| *n == e.node && *r == e.rule),
            "error {e:?} not among {broken:?}"
        ),
    }
}

fn check_run(p: &Program, g: &Graph<i64, Ctx>) {
    let mut memo = vec![None; p.nodes.len()];
    if work(p, p.root, &mut memo) > WORK_MAX {
        return;
    }
    let mut model = Model {
        p,
        tally: Tally::default(),
    };
    let mut expected_ctx = Ctx([1, 2, 3]);
    let expected = model.eval(p.root, p.input, &mut expected_ctx);
    let config = RunnerConfig {
        max_records: 64,
        ..RunnerConfig::default()
    };
    let mut runner = Runner::new(config);
    let mut slow = Runner::new(RunnerConfig {
        fast_paths: false,
        copy_on_write: false,
        ..config
    });
    // Twice on one runner (the second run meets the first one's cache entries), once with
    // the fast paths and copy-on-write off, then with every fan-out forked, its branches run
    // last to first on runners of their own.
    for round in 0..4 {
        let opts = RunOptions::default();
        let ctx = Ctx([1, 2, 3]);
        let r = match round {
            0 | 1 => runner.run(g, p.input, ctx, &NoClock, &opts),
            2 => slow.run(g, p.input, ctx, &NoClock, &opts),
            _ => runner.run_in(g, p.input, ctx, &NoClock, &opts, &Backwards(config)),
        };
        match expected {
            Ok(y) => {
                assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(y)));
                assert_eq!(r.context, expected_ctx, "final context");
            }
            Err(f) => {
                let outcome = if f.abort {
                    Outcome::Aborted
                } else {
                    Outcome::Failed
                };
                assert_eq!((r.outcome, r.output), (outcome, None));
                let e = r.error.as_ref().expect("a failed run has an error");
                assert_eq!(e.step, p.nodes[f.node].name, "failing node");
                assert_eq!(e.kind.class(), f.class, "error class");
            }
        }
        // Forked siblings after a failure may have run steps the inline path never starts.
        let exact = round < 3 || !model.tally.cut_short;
        let tally = |what: &str, got: u64, model: u64| {
            if exact {
                assert_eq!(got, model, "{what} (round {round})");
            } else {
                assert!(got >= model, "{what}: {got} < {model}");
            }
        };
        let records = r.records.len() as u64 + u64::from(r.records_dropped);
        tally("records", records, model.tally.records);
        tally("usage", r.usage.cost, model.tally.cost);
        let c = &r.counters;
        tally("steps run", c.get(Counter::StepsRun), model.tally.tasks);
        let outcomes = [
            Counter::StepsSucceeded,
            Counter::StepsFailed,
            Counter::StepsSkipped,
            Counter::StepsAborted,
        ];
        let ended: u64 = outcomes.iter().map(|&o| c.get(o)).sum();
        assert_eq!(ended, c.get(Counter::StepsRun), "one outcome per step run");
        tally("retries", c.get(Counter::Retries), model.tally.retries);
        let fallbacks = c.get(Counter::FallbacksUsed);
        tally("fallbacks", fallbacks, model.tally.fallbacks);
    }
}

/// A host that forks every fan-out and runs its branches last to first, each on a runner of
/// its own: the folded results must not depend on the order branches ran in.
struct Backwards(RunnerConfig);

impl<K: crate::graph::Clock> Host<i64, Ctx, K> for Backwards {
    fn forks(&self, _node: crate::graph::NodeId, _width: usize, _cost: u32) -> bool {
        true
    }

    fn fork(
        &self,
        _max_width: usize,
        fan: &Fan<'_, i64, Ctx, K, Self>,
        branches: &mut [Lane<i64, Ctx>],
    ) {
        for b in branches.iter_mut().rev() {
            fan.run(b, &mut Runner::<i64, Ctx>::new(self.0));
        }
    }
}

/// Runs `data` as a graph-building program, then runs the graph it builds against the model.
pub fn run(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let (bump, other_bump) = (bumpalo::Bump::new(), bumpalo::Bump::new());
    let mut b = GraphBuilder::<i64, Ctx>::new_in(&bump);
    let mut other = GraphBuilder::<i64, Ctx>::new_in(&other_bump);
    let (program, root) = build_program(&mut bytes, &mut b, &mut other);
    let built = b.freeze(root);
    check_build(&program, &built);
    if let Ok(g) = &built {
        check_run(&program, g);
    }
}
