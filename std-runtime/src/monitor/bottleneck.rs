//! Bottlenecks: the share of sampled runs' latency held by each step, fan-out and the queue,
//! on the runs' *critical paths* (the longest chain of work that the run's end waited for;
//! Kelley and Walker's critical path method, applied to one run after it ended).
//!
//! **What a run is split into.** A sampled run's time is its queue wait (a submitted run:
//! ticks from submission to start; 0 for an inline run) plus its latency `W` (start to end).
//! The core writes a [`StepRecord`] per task execution and per loop, in the order they end,
//! with a latency but no start tick; fan-outs, sequences and switches write none. So the
//! run's records are first matched to the graph's structure (one *execution* per node run,
//! in a tree: [`Walk::parse`]), then `W` is handed down that tree ([`Walk::give`]):
//!
//! - a task takes its measured latency; its fallback's latency (recorded inside it) is the
//!   fallback's, the rest the task's own;
//! - a loop takes its measured latency; its iterations get theirs, and what is left (the
//!   exit predicate, the glue between iterations) is the loop's own, under its name;
//! - a sequence (or switch) hands each child its time: measured ones their latency, the
//!   ones without a fan-out under them their estimate (the sum of what is measured in
//!   them), and the rest of the sequence's time goes to the children holding a fan-out, in
//!   proportion to their estimates;
//! - a fan-out (parallel or map) of duration `D` puts on the critical path only the branch
//!   (or map item) that finished last. Records carry no end tick, so that is taken to be the
//!   branch with the longest critical-path estimate (forked branches start together, so the
//!   longest ends last; on a tie, the later one). That branch gets its estimate; the
//!   fan-out's own share is `D` minus it: fork and join, splitting and reducing, and, for a
//!   fan-out run inline (branches one after another), the other branches' time;
//! - what is left of `W` at the top (run set-up and the glue between top-level steps, when
//!   no fan-out is there to hold it) is the row `(run overhead)`.
//!
//! The shares of a graph's rows sum to 1: the total is the queue waits plus the run
//! latencies (should a run's records sum to more than its measured latency, a clock that
//! stepped, the total takes their sum instead).
//!
//! **Which runs.** Sampled runs only (telemetry level `histograms` and up, one run in
//! `telemetry.run_sample_period` per pooled runner): the others measure no step latency. A
//! run some of whose records did not fit (`records_dropped > 0`), whose records do not
//! match its graph, or of a graph past [`MAX_GRAPHS`], is skipped and counted in
//! `TelemetryStats::bottleneck_runs_skipped`.
//!
//! A *flat* graph (no fan-out, no loop, no fallback) needs no match: its records are its
//! critical path, one after another, and what they leave of `W` is the run overhead.
//!
//! **Cost.** Nothing for a run that is not sampled. A sampled run costs O(its records): the
//! match visits each record a bounded number of times ([`MAX_VISITS_PER_RECORD`] caps it,
//! else the run is skipped), the hand-down visits each execution once, and each row is found
//! through a per-graph table by node id; the scratch is reused, so a run allocates nothing
//! once its graph's rows exist.

use std::collections::HashMap;

use flujo_core::graph::{Graph, NodeId, NodeKind, MAX_FALLBACK_CHAIN};
use flujo_core::interp::StepRecord;
use flujo_core::telemetry::StepOutcome;

use crate::report::{BottleneckKind, BottleneckRow, MAX_STEP_ROWS, OTHER_STEPS};

/// Graphs whose bottlenecks a builder keeps; runs of others are skipped (and counted).
pub(crate) const MAX_GRAPHS: usize = 64;

/// Nodes of a graph whose rows are remembered by node id (the rest are found by name).
const MAX_MEMO_NODES: usize = 1 << 16;

/// The match of a run's records visits nodes at most this many times per record (plus a
/// constant), else the run is skipped: a bound on the work of a malformed or adversarial
/// record list. A well-formed run needs about one visit per node executed plus one per
/// arm or branch tried, far below it.
pub(crate) const MAX_VISITS_PER_RECORD: usize = 4 * flujo_core::graph::MAX_DEPTH;

/// The name of the queue's row.
pub(crate) const QUEUE: &str = "(queue)";
/// The name of the run overhead's row.
pub(crate) const OVERHEAD: &str = "(run overhead)";

/// No node: the queue's and the overhead's contributions.
const NO_NODE: u32 = u32::MAX;

/// How an execution ended, as far as its records tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Ended with an output (or nothing says otherwise).
    Ok,
    /// Failed: an enclosing sequence stops after it.
    Failed,
    /// Aborted the run.
    Aborted,
}

impl End {
    fn of(outcome: StepOutcome) -> Self {
        match outcome {
            StepOutcome::Succeeded | StepOutcome::Skipped => End::Ok,
            StepOutcome::Failed => End::Failed,
            StepOutcome::Aborted => End::Aborted,
        }
    }
}

/// One execution of a node found in a run's records.
#[derive(Clone, Copy, Debug)]
struct Exec {
    node: u32,
    kind: NodeKind,
    /// A task's or loop's latency, from its record.
    measured: Option<u64>,
    /// Its critical-path estimate: measured, or the sum (sequence, switch) or maximum
    /// (fan-out) of its children's.
    est: u64,
    /// Whether a fan-out is under it outside every measured node (it can hold time its
    /// records do not show).
    elastic: bool,
    end: End,
    /// Its children in [`Walk::kids`]: a task's fallback, a loop's iterations, a sequence's
    /// children, a switch's arm, a fan-out's branches or items.
    kids_start: u32,
    kids_len: u32,
}

/// The scratch of one run's analysis, reused from run to run.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    execs: Vec<Exec>,
    kids: Vec<u32>,
    /// Children found so far of the executions being matched.
    stack: Vec<u32>,
    /// What the run's critical path held: (node or [`NO_NODE`], kind, ns).
    out: Vec<(u32, BottleneckKind, u64)>,
}

/// Where the match stands, to go back to when a guess fails.
#[derive(Clone, Copy)]
struct Mark {
    at: usize,
    execs: usize,
    kids: usize,
    stack: usize,
}

/// The match of one run's records to its graph.
struct Parse<'a, P, C> {
    g: &'a Graph<P, C>,
    recs: &'a [StepRecord],
    at: usize,
    w: &'a mut Walk,
    visits_left: usize,
}

impl<P, C> Parse<'_, P, C> {
    fn mark(&self) -> Mark {
        Mark {
            at: self.at,
            execs: self.w.execs.len(),
            kids: self.w.kids.len(),
            stack: self.w.stack.len(),
        }
    }

    fn reset(&mut self, m: Mark) {
        self.at = m.at;
        self.w.execs.truncate(m.execs);
        self.w.kids.truncate(m.kids);
        self.w.stack.truncate(m.stack);
    }

    /// Moves the children found since `base` (on the stack) into `kids` and adds the
    /// execution; returns its index.
    fn finish(&mut self, mut e: Exec, base: usize) -> u32 {
        e.kids_start = self.w.kids.len() as u32;
        e.kids_len = (self.w.stack.len() - base) as u32;
        self.w.kids.extend(self.w.stack.drain(base..));
        self.w.execs.push(e);
        (self.w.execs.len() - 1) as u32
    }

    fn exec(&self, i: u32) -> &Exec {
        &self.w.execs[i as usize]
    }

    /// One execution of `id` from the cursor, if its records start there (else nothing is
    /// consumed).
    fn node(&mut self, id: NodeId) -> Option<u32> {
        self.visits_left = self.visits_left.checked_sub(1)?;
        match self.g.kind(id) {
            NodeKind::Task => self.task(id, 0),
            NodeKind::Loop => self.loop_node(id),
            NodeKind::Sequence => self.sequence(id),
            NodeKind::Switch => self.switch(id),
            NodeKind::Parallel | NodeKind::Map => self.fan(id),
        }
    }

    /// A task: its fallback's records (if it ran), then its own.
    fn task(&mut self, id: NodeId, hops: usize) -> Option<u32> {
        let rec = *self.recs.get(self.at)?;
        let base = self.w.stack.len();
        let own = if rec.node == id {
            rec
        } else {
            let fallback = self.g.fallback(id)?;
            if hops >= MAX_FALLBACK_CHAIN {
                return None;
            }
            let m = self.mark();
            let f = self.task(fallback, hops + 1)?;
            match self.recs.get(self.at) {
                Some(r) if r.node == id => {
                    self.w.stack.push(f);
                    *r
                }
                _ => {
                    self.reset(m);
                    return None;
                }
            }
        };
        self.at += 1;
        let e = Exec {
            node: id.0,
            kind: NodeKind::Task,
            measured: Some(own.latency_ticks),
            est: own.latency_ticks,
            elastic: false,
            end: End::of(own.outcome),
            kids_start: 0,
            kids_len: 0,
        };
        Some(self.finish(e, base))
    }

    /// A loop: its iterations' records, then its own.
    fn loop_node(&mut self, id: NodeId) -> Option<u32> {
        let body = self.g.children(id).next()?;
        let m = self.mark();
        loop {
            let Some(&rec) = self.recs.get(self.at) else {
                self.reset(m);
                return None;
            };
            if rec.node == id {
                self.at += 1;
                let e = Exec {
                    node: id.0,
                    kind: NodeKind::Loop,
                    measured: Some(rec.latency_ticks),
                    est: rec.latency_ticks,
                    elastic: false,
                    end: End::of(rec.outcome),
                    kids_start: 0,
                    kids_len: 0,
                };
                return Some(self.finish(e, m.stack));
            }
            match self.node(body) {
                Some(i) => self.w.stack.push(i),
                None => {
                    self.reset(m);
                    return None;
                }
            }
        }
    }

    /// A sequence: its children in order, up to the first that failed. A child with no
    /// records here (it did not run, or ran none, like a map of no items) is passed over.
    fn sequence(&mut self, id: NodeId) -> Option<u32> {
        let (g, base) = (self.g, self.w.stack.len());
        let (mut est, mut elastic, mut end) = (0u64, false, End::Ok);
        for child in g.children(id) {
            let Some(i) = self.node(child) else {
                continue;
            };
            self.w.stack.push(i);
            let e = *self.exec(i);
            est = est.saturating_add(e.est);
            elastic |= e.elastic;
            end = e.end;
            if end != End::Ok {
                break;
            }
        }
        if self.w.stack.len() == base {
            return None;
        }
        let e = Exec {
            node: id.0,
            kind: NodeKind::Sequence,
            measured: None,
            est,
            elastic,
            end,
            kids_start: 0,
            kids_len: 0,
        };
        Some(self.finish(e, base))
    }

    /// A switch: the first arm whose records start here.
    fn switch(&mut self, id: NodeId) -> Option<u32> {
        let (g, base) = (self.g, self.w.stack.len());
        let arm = g.children(id).find_map(|arm| self.node(arm))?;
        self.w.stack.push(arm);
        let a = *self.exec(arm);
        let e = Exec {
            node: id.0,
            kind: NodeKind::Switch,
            measured: None,
            est: a.est,
            elastic: a.elastic,
            end: a.end,
            kids_start: 0,
            kids_len: 0,
        };
        Some(self.finish(e, base))
    }

    /// A fan-out: a parallel node's branches in declaration order (each may have run or
    /// not), or a map's items (the body, as many times as its records follow).
    fn fan(&mut self, id: NodeId) -> Option<u32> {
        let (g, base) = (self.g, self.w.stack.len());
        let kind = g.kind(id);
        if kind == NodeKind::Map {
            let body = g.children(id).next()?;
            while let Some(i) = self.node(body) {
                self.w.stack.push(i);
            }
        } else {
            for branch in g.children(id) {
                if let Some(i) = self.node(branch) {
                    self.w.stack.push(i);
                }
            }
        }
        let kids = &self.w.stack[base..];
        if kids.is_empty() {
            return None;
        }
        let ends = kids.iter().map(|&k| self.w.execs[k as usize].end);
        let aborted = ends.clone().any(|e| e == End::Aborted);
        // A map fails with its first failed item; a parallel node surely failed when every
        // branch did (under the propagate strategy it fails with one, but its records do not
        // say which strategy it has: a sequence goes on looking, which costs nothing when
        // nothing follows).
        let failed = if kind == NodeKind::Map {
            ends.clone().any(|e| e == End::Failed)
        } else {
            ends.clone().all(|e| e == End::Failed)
        };
        let end = match (aborted, failed) {
            (true, _) => End::Aborted,
            (false, true) => End::Failed,
            _ => End::Ok,
        };
        let est = kids
            .iter()
            .map(|&k| self.w.execs[k as usize].est)
            .max()
            .unwrap_or(0);
        let e = Exec {
            node: id.0,
            kind,
            measured: None,
            est,
            elastic: true,
            end,
            kids_start: 0,
            kids_len: 0,
        };
        Some(self.finish(e, base))
    }
}

impl Walk {
    /// Matches `records` to `graph`: the root's execution (`Ok(None)` when there are no
    /// records), or `Err(())` when they do not match (or take too long to).
    fn parse<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        records: &[StepRecord],
    ) -> Result<Option<u32>, ()> {
        self.execs.clear();
        self.kids.clear();
        self.stack.clear();
        let mut p = Parse {
            g: graph,
            recs: records,
            at: 0,
            w: self,
            visits_left: records
                .len()
                .saturating_add(1)
                .saturating_mul(MAX_VISITS_PER_RECORD),
        };
        let root = p.node(graph.root());
        if p.at == records.len() && p.visits_left > 0 {
            Ok(root)
        } else {
            Err(())
        }
    }

    fn kids(&self, e: &Exec) -> std::ops::Range<usize> {
        e.kids_start as usize..(e.kids_start + e.kids_len) as usize
    }

    /// Hands `d` ns to execution `i` (see the module's header); returns what it could not
    /// hold (a sequence or switch with no fan-out under it given more than its estimate).
    fn give(&mut self, i: u32, d: u64) -> u64 {
        let e = self.execs[i as usize];
        match e.kind {
            NodeKind::Task => {
                let measured = e.measured.unwrap_or(0);
                let mut own = measured;
                for k in self.kids(&e) {
                    let f = self.kids[k];
                    let fallback = self.execs[f as usize].measured.unwrap_or(0);
                    own = own.saturating_sub(fallback);
                    self.give(f, fallback);
                }
                self.out.push((e.node, BottleneckKind::Step, own));
                d.saturating_sub(measured)
            }
            NodeKind::Loop => {
                let measured = e.measured.unwrap_or(0);
                let own = self.share(&e, measured);
                self.out.push((e.node, BottleneckKind::Step, own));
                d.saturating_sub(measured)
            }
            NodeKind::Sequence | NodeKind::Switch => self.share(&e, d),
            NodeKind::Parallel | NodeKind::Map => {
                // The branch that finished last: the longest (the later on a tie).
                let mut critical = None;
                for k in self.kids(&e) {
                    let b = self.kids[k];
                    let est = self.execs[b as usize].est;
                    if critical.is_none_or(|(_, longest)| est >= longest) {
                        critical = Some((b, est));
                    }
                }
                let (b, est) = critical.expect("a fan-out found has a branch");
                let left = self.give(b, est);
                let own = d.saturating_sub(est).saturating_add(left);
                self.out.push((e.node, BottleneckKind::FanOut, own));
                0
            }
        }
    }

    /// Hands `d` ns to the children of `e`, one after another in time (a sequence's
    /// children, a loop's iterations, a switch's arm); returns what none of them held.
    fn share(&mut self, e: &Exec, d: u64) -> u64 {
        let kids = self.kids(e);
        let (mut fixed, mut elastic_est, mut elastic_count) = (0u64, 0u64, 0u64);
        for k in kids.clone() {
            let c = &self.execs[self.kids[k] as usize];
            if c.elastic {
                elastic_est = elastic_est.saturating_add(c.est);
                elastic_count += 1;
            } else {
                fixed = fixed.saturating_add(c.measured.unwrap_or(c.est));
            }
        }
        let mut rest = d.saturating_sub(fixed);
        let mut left = 0u64;
        let (mut est_left, mut count_left) = (elastic_est, elastic_count);
        for k in kids {
            let i = self.kids[k];
            let c = self.execs[i as usize];
            if !c.elastic {
                left = left.saturating_add(self.give(i, c.measured.unwrap_or(c.est)));
                continue;
            }
            // Proportional to the estimates (evenly when they are all 0); the last elastic
            // child takes what rounding left, so the parts sum to `rest` exactly.
            let part = if count_left == 1 {
                rest
            } else if est_left == 0 {
                rest / count_left
            } else {
                ((u128::from(rest) * u128::from(c.est)) / u128::from(est_left)) as u64
            };
            rest -= part;
            est_left -= c.est;
            count_left -= 1;
            left = left.saturating_add(self.give(i, part));
        }
        if elastic_count == 0 {
            left.saturating_add(rest)
        } else {
            left
        }
    }

    /// What a run's critical path held, into `out`: its steps', loops' and fan-outs' own
    /// ns, the queue wait and the run overhead. `Err(())` when the records do not match
    /// the graph.
    pub(crate) fn run<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        records: &[StepRecord],
        wall_ns: u64,
        queue_ns: u64,
    ) -> Result<&[(u32, BottleneckKind, u64)], ()> {
        self.out.clear();
        let root = self.parse(graph, records)?;
        let left = match root {
            Some(root) => self.give(root, wall_ns),
            None => wall_ns,
        };
        self.out.push((NO_NODE, BottleneckKind::Overhead, left));
        self.out.push((NO_NODE, BottleneckKind::Queue, queue_ns));
        Ok(&self.out)
    }
}

/// One row being accumulated.
#[derive(Clone, Debug)]
struct Entry {
    kind: BottleneckKind,
    name: String,
    critical_ns: u64,
    runs: u64,
    /// The last run (of [`GraphEntry::runs`]) counted in `runs`.
    last_run: u64,
}

/// The bottlenecks of one graph.
#[derive(Clone, Debug)]
struct GraphEntry {
    id: u32,
    /// The root's name.
    name: String,
    /// Sampled runs counted.
    runs: u64,
    /// Their queue waits plus latencies.
    total_ns: u64,
    /// Invariant: `index[rows[i].name][rows[i].kind as usize] == i`.
    rows: Vec<Entry>,
    /// Per name, its row of each kind (`u32::MAX`: none): looked up by `&str`, so finding
    /// a row allocates nothing.
    index: HashMap<String, [u32; BottleneckKind::COUNT]>,
    /// Each node's row (`u32::MAX`: not looked up yet), for the first [`MAX_MEMO_NODES`].
    memo: Vec<u32>,
    /// The queue's and the run overhead's rows, once made.
    queue_row: Option<u32>,
    overhead_row: Option<u32>,
    /// Whether the graph is flat ([`is_flat`]), once a run of it was added.
    flat: Option<bool>,
}

/// Whether no record of a run of `graph` can hold another's time or run beside another: it
/// has no fan-out, no loop and no task with a fallback. Then its records are its critical
/// path, one after another, and a run needs no match to the graph (so none is made: its
/// records are taken as the interpreter wrote them).
fn is_flat<P, C>(graph: &Graph<P, C>) -> bool {
    (0..graph.len() as u32)
        .map(NodeId)
        .all(|n| match graph.kind(n) {
            NodeKind::Parallel | NodeKind::Map | NodeKind::Loop => false,
            NodeKind::Task => graph.fallback(n).is_none(),
            NodeKind::Sequence | NodeKind::Switch => true,
        })
}

impl GraphEntry {
    fn new(id: u32, name: &str) -> Self {
        Self {
            id,
            name: name.to_owned(),
            runs: 0,
            total_ns: 0,
            rows: Vec::new(),
            index: HashMap::new(),
            memo: Vec::new(),
            queue_row: None,
            overhead_row: None,
            flat: None,
        }
    }

    /// Adds a run of a flat graph (see [`is_flat`]): each record is a step on the critical
    /// path, in turn.
    fn add_flat_run<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        records: &[StepRecord],
        wall_ns: u64,
        queue_ns: u64,
    ) {
        self.runs = self.runs.saturating_add(1);
        let mut steps = 0u64;
        for r in records {
            let i = self.node_row(graph, r.node.0, BottleneckKind::Step);
            self.add(i, r.latency_ticks);
            steps = steps.saturating_add(r.latency_ticks);
        }
        let overhead = wall_ns.saturating_sub(steps);
        for (kind, ns) in [
            (BottleneckKind::Overhead, overhead),
            (BottleneckKind::Queue, queue_ns),
        ] {
            if ns > 0 {
                let i = self.fixed_row(kind);
                self.add(i, ns);
            }
        }
        let total = steps.saturating_add(overhead).saturating_add(queue_ns);
        self.total_ns = self.total_ns.saturating_add(total);
    }

    /// The row of the queue or the run overhead (`kind`), remembered.
    fn fixed_row(&mut self, kind: BottleneckKind) -> usize {
        let (slot, name) = match kind {
            BottleneckKind::Queue => (self.queue_row, QUEUE),
            _ => (self.overhead_row, OVERHEAD),
        };
        if let Some(i) = slot {
            return i as usize;
        }
        let i = self.row(kind, name);
        match kind {
            BottleneckKind::Queue => self.queue_row = Some(i as u32),
            _ => self.overhead_row = Some(i as u32),
        }
        i
    }

    /// The row of `(kind, name)`, made on first use; past [`MAX_STEP_ROWS`] rows, new names
    /// share the row [`OTHER_STEPS`] of their kind.
    fn row(&mut self, kind: BottleneckKind, name: &str) -> usize {
        match self.index.get(name) {
            Some(slots) if slots[kind as usize] != u32::MAX => slots[kind as usize] as usize,
            _ => self.new_row(kind, name),
        }
    }

    #[cold]
    fn new_row(&mut self, kind: BottleneckKind, name: &str) -> usize {
        let name = if self.rows.len() + 1 < MAX_STEP_ROWS {
            name
        } else {
            OTHER_STEPS
        };
        let slots = self
            .index
            .entry(name.to_owned())
            .or_insert([u32::MAX; BottleneckKind::COUNT]);
        if slots[kind as usize] != u32::MAX {
            return slots[kind as usize] as usize;
        }
        let i = self.rows.len();
        slots[kind as usize] = i as u32;
        self.rows.push(Entry {
            kind,
            name: name.to_owned(),
            critical_ns: 0,
            runs: 0,
            last_run: 0,
        });
        i
    }

    /// The row of node `node` of `graph` (through the memo).
    fn node_row<P, C>(&mut self, graph: &Graph<P, C>, node: u32, kind: BottleneckKind) -> usize {
        let at = node as usize;
        if let Some(&i) = self.memo.get(at) {
            if i != u32::MAX {
                return i as usize;
            }
        }
        let i = self.row(kind, graph.name(NodeId(node)));
        if at < MAX_MEMO_NODES {
            if self.memo.len() <= at {
                self.memo.resize(at + 1, u32::MAX);
            }
            self.memo[at] = i as u32;
        }
        i
    }

    /// Adds `ns` to row `i` in run number `self.runs`.
    fn add(&mut self, i: usize, ns: u64) {
        let run = self.runs;
        let row = &mut self.rows[i];
        row.critical_ns = row.critical_ns.saturating_add(ns);
        if row.last_run != run {
            row.last_run = run;
            row.runs = row.runs.saturating_add(1);
        }
    }
}

/// The bottleneck accumulator of a report builder: per graph (at most [`MAX_GRAPHS`]), per
/// row, the critical-path ns summed over sampled runs and the runs it was on the path of.
#[derive(Debug, Default)]
pub(crate) struct Bottlenecks {
    graphs: Vec<GraphEntry>,
    /// Sampled runs not counted (see the module's header).
    skipped: u64,
    walk: Walk,
}

impl Bottlenecks {
    /// Adds a sampled run of `graph`: its records (`dropped` did not fit), its latency and
    /// its queue wait (0 for an inline run), in ns.
    pub(crate) fn add_run<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        records: &[StepRecord],
        dropped: u32,
        wall_ns: u64,
        queue_ns: u64,
    ) {
        let Some(g) = self.graph(graph.id(), graph.name(graph.root())) else {
            self.skipped = self.skipped.saturating_add(1);
            return;
        };
        let entry = &mut self.graphs[g];
        if dropped > 0 {
            self.skipped = self.skipped.saturating_add(1);
            return;
        }
        if *entry.flat.get_or_insert_with(|| is_flat(graph)) {
            entry.add_flat_run(graph, records, wall_ns, queue_ns);
            return;
        }
        let Ok(out) = self.walk.run(graph, records, wall_ns, queue_ns) else {
            self.skipped = self.skipped.saturating_add(1);
            return;
        };
        entry.runs = entry.runs.saturating_add(1);
        let mut total = 0u64;
        for &(node, kind, ns) in out {
            let i = match kind {
                BottleneckKind::Queue | BottleneckKind::Overhead if ns == 0 => continue,
                BottleneckKind::Queue | BottleneckKind::Overhead => entry.fixed_row(kind),
                BottleneckKind::Step | BottleneckKind::FanOut => entry.node_row(graph, node, kind),
            };
            entry.add(i, ns);
            total = total.saturating_add(ns);
        }
        entry.total_ns = entry.total_ns.saturating_add(total);
    }

    /// The index of graph `id`'s entry, made on first use (`None` past [`MAX_GRAPHS`]).
    fn graph(&mut self, id: u32, name: &str) -> Option<usize> {
        if let Some(i) = self.graphs.iter().position(|g| g.id == id) {
            return Some(i);
        }
        if self.graphs.len() >= MAX_GRAPHS {
            return None;
        }
        self.graphs.push(GraphEntry::new(id, name));
        Some(self.graphs.len() - 1)
    }

    /// Sampled runs skipped.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Adds what `other` accumulated.
    pub(crate) fn merge(&mut self, other: &Bottlenecks) {
        self.skipped = self.skipped.saturating_add(other.skipped);
        for theirs in other.graphs.iter().filter(|g| g.runs > 0) {
            let Some(g) = self.graph(theirs.id, &theirs.name) else {
                self.skipped = self.skipped.saturating_add(theirs.runs);
                continue;
            };
            let mine = &mut self.graphs[g];
            mine.runs = mine.runs.saturating_add(theirs.runs);
            mine.total_ns = mine.total_ns.saturating_add(theirs.total_ns);
            for row in theirs.rows.iter().filter(|r| r.runs > 0) {
                let i = mine.row(row.kind, &row.name);
                let r = &mut mine.rows[i];
                r.critical_ns = r.critical_ns.saturating_add(row.critical_ns);
                r.runs = r.runs.saturating_add(row.runs);
            }
        }
    }

    /// Forgets every count, keeping the graphs' rows (names, memo) and the scratch, so a
    /// builder cleared for reuse allocates nothing for the graphs it saw.
    pub(crate) fn clear(&mut self) {
        self.skipped = 0;
        for g in &mut self.graphs {
            (g.runs, g.total_ns) = (0, 0);
            for r in &mut g.rows {
                (r.critical_ns, r.runs, r.last_run) = (0, 0, 0);
            }
        }
    }

    /// Every row, by share descending (then by graph id, kind and name).
    pub(crate) fn rows(&self) -> Vec<BottleneckRow> {
        let mut rows: Vec<BottleneckRow> = self
            .graphs
            .iter()
            .filter(|g| g.runs > 0)
            .flat_map(|g| {
                g.rows.iter().filter(|r| r.runs > 0).map(move |r| {
                    let share = if g.total_ns == 0 {
                        0.0
                    } else {
                        r.critical_ns as f64 / g.total_ns as f64
                    };
                    BottleneckRow {
                        graph: g.name.clone(),
                        graph_id: g.id,
                        step: r.name.clone(),
                        kind: r.kind,
                        share,
                        critical_ns: r.critical_ns,
                        runs: r.runs,
                        graph_runs: g.runs,
                    }
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            b.share
                .total_cmp(&a.share)
                .then(a.graph_id.cmp(&b.graph_id))
                .then(a.kind.cmp(&b.kind))
                .then_with(|| a.step.cmp(&b.step))
        });
        rows
    }

    /// The `n` rows of the largest shares (the monitor's query).
    pub(crate) fn top(&self, n: usize) -> Vec<BottleneckRow> {
        let mut rows = self.rows();
        rows.truncate(n);
        rows
    }
}

#[cfg(test)]
mod tests;
