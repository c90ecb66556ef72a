//! Exact per-step counts, kept by each pooled runner from every record of every run (the report's
//! step rows): a few instructions per record, through a dense node index per graph.
//!
//! Most runs are *clean*: every step succeeded at its first attempt, with no cache hit,
//! fallback, skip or refusal. A clean run of a graph without loops, switches or maps runs the
//! same steps every time, so after counting the first one record by record, the tally keeps
//! its rows (the graph's *shape*) and counts each later clean run with one increment; the
//! increments are spread over the shape's rows before anyone reads them. The counters of the
//! run say whether it was clean, so this costs O(1) per run instead of O(records).

use std::sync::Arc;

use flujo_core::graph::{Graph, NodeId, NodeKind};
use flujo_core::interp::{Outcome, RunResult, StepRecord};
use flujo_core::policy::Breaker;
use flujo_core::telemetry::{Counter, Counters};

use crate::monitor::window::{Cell, WinHist, CLASSES};
use crate::report::{StepRow, OTHER_STEPS};

/// Distinct steps a pooled runner counts apart; the rest share the row [`OTHER_STEPS`].
const MAX_STEPS: usize = 4096;

/// Graphs a pooled runner keeps a node index for (the most recently run first).
const MAX_GRAPHS: usize = 8;

/// Nodes a graph's index covers; the nodes past it count in [`OTHER_STEPS`].
const MAX_INDEXED_NODES: usize = 1 << 20;

/// Distinct circuit breakers a pooled runner keeps for the report; later ones are not reported.
const MAX_BREAKERS: usize = 256;

/// No row yet.
const NONE: u32 = u32::MAX;

/// A circuit breaker met in a graph a pooled runner ran, kept so the report can read its own
/// (exact) counts.
#[derive(Clone)]
pub(crate) struct SeenBreaker {
    pub(crate) breaker: Arc<Breaker>,
    /// The first task seen guarded by it: its node and name.
    pub(crate) step_id: u32,
    pub(crate) step: String,
    /// Whether a task of another name is guarded by it too.
    pub(crate) shared: bool,
}

/// What a graph's clean runs look like (see the [module docs](self)).
enum Shape {
    /// The graph has a loop, switch or map: runs differ, each is counted record by record.
    Varies,
    /// Every clean run is the same; none has been counted yet.
    Unseen,
    /// Every clean run adds one execution and one success to each of `rows` (a row once per
    /// record, in record order); `pending` clean runs are not yet added (to the report's rows;
    /// `windowed` of them not yet to the monitor's open bucket).
    Seen {
        rows: Box<[u32]>,
        pending: u64,
        windowed: u64,
    },
}

/// A graph's node index: its id, node -> row (`NONE`: not seen yet), and its shape.
struct Index {
    graph: u32,
    rows: Vec<u32>,
    shape: Shape,
}

/// Exact counts per step of the runs one pooled runner made.
#[derive(Default)]
pub(crate) struct Tallies {
    /// Per graph, its node index; most recent first.
    graphs: Vec<Index>,
    rows: Vec<StepRow>,
    /// The row of [`OTHER_STEPS`], once made.
    other: Option<u32>,
    /// The breakers of the graphs indexed so far, one entry per breaker.
    breakers: Vec<SeenBreaker>,
    /// Per row, what its step did in the monitor's open bucket (when the monitor is on).
    window: Vec<WinRow>,
}

/// A step's counts in the monitor's open bucket (see `crate::monitor`).
#[derive(Default)]
struct WinRow {
    ended: u64,
    failed: u64,
    classes: [u64; CLASSES],
    cache_hits: u64,
    latency: Option<Box<WinHist>>,
}

impl WinRow {
    #[inline]
    fn count(&mut self, record: &StepRecord) {
        use flujo_core::telemetry::StepOutcome;
        self.ended += 1;
        self.failed += u64::from(matches!(
            record.outcome,
            StepOutcome::Failed | StepOutcome::Aborted
        ));
        if let Some(class) = record.error_class {
            self.classes[crate::monitor::class_index(class)] += 1;
        }
        self.cache_hits += u64::from(record.cache_hit);
    }

    fn is_empty(&self) -> bool {
        self.ended == 0 && self.latency.as_ref().is_none_or(|h| h.count == 0)
    }
}

impl Tallies {
    /// Counts the records of `run`, a run of `graph`. With `windowed`, they count in the
    /// monitor's open bucket too.
    #[inline]
    pub(crate) fn count<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        run: &RunResult<'_, P, C>,
        windowed: bool,
    ) {
        let records = run.records;
        if records.is_empty() {
            return;
        }
        let at = self.index_of(graph);
        let clean = is_clean(run);
        if let Shape::Seen {
            rows,
            pending,
            windowed: w,
        } = &mut self.graphs[at].shape
        {
            if clean && rows.len() == records.len() {
                *pending += 1;
                *w += u64::from(windowed);
                return;
            }
        }
        self.count_each(graph, at, records, clean, windowed);
    }

    /// Records the sampled latencies `samples` (`(node, ns)` of a run of `graph`, counted
    /// before) in the monitor's open bucket.
    pub(crate) fn sample<P, C>(&mut self, graph: &Graph<P, C>, samples: &[(NodeId, u64)]) {
        let at = self.index_of(graph);
        for &(node, ns) in samples {
            let row = self.row_of(graph, at, node) as usize;
            self.window[row]
                .latency
                .get_or_insert_with(Default::default)
                .record(ns);
        }
    }

    /// Moves the monitor's open bucket of every step that counted anything into `into`, as
    /// `(step, cell)`.
    pub(crate) fn take_window(&mut self, into: &mut Vec<(String, Cell)>) {
        for index in &mut self.graphs {
            spread_window(index, &mut self.window);
        }
        for (row, w) in self.rows.iter().zip(&mut self.window) {
            if w.is_empty() {
                continue;
            }
            let latency = w.latency.as_mut().map(|h| h.take()).unwrap_or_default();
            let cell = Cell {
                ended: w.ended,
                failed: w.failed,
                classes: w.classes,
                cache_hits: w.cache_hits,
                cache_misses: 0,
                latency,
                queue: Default::default(),
            };
            let kept = w.latency.take();
            *w = WinRow {
                latency: kept,
                ..WinRow::default()
            };
            match into.iter_mut().find(|(s, _)| *s == row.step) {
                Some((_, c)) => c.merge(&cell),
                None => into.push((row.step.clone(), cell)),
            }
        }
    }

    /// Counts `records` one by one; keeps the shape of the first clean run of a graph whose
    /// clean runs are all alike.
    fn count_each<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        at: usize,
        records: &[StepRecord],
        clean: bool,
        windowed: bool,
    ) {
        for rec in records {
            let row = self.row_of(graph, at, rec.node);
            self.rows[row as usize].count_with(rec, |count, n| *count += n);
            if windowed {
                self.window[row as usize].count(rec);
            }
        }
        if clean && matches!(self.graphs[at].shape, Shape::Unseen) {
            let rows = records
                .iter()
                .map(|rec| self.row_of(graph, at, rec.node))
                .collect();
            self.graphs[at].shape = Shape::Seen {
                rows,
                pending: 0,
                windowed: 0,
            };
        }
    }

    /// The row of `node` of the graph indexed at `at`, made if needed.
    #[inline]
    fn row_of<P, C>(&mut self, graph: &Graph<P, C>, at: usize, node: NodeId) -> u32 {
        match self.graphs[at].rows.get(node.0 as usize).copied() {
            Some(NONE) | None => self.new_row(graph, at, node),
            Some(row) => row,
        }
    }

    /// Adds the pending clean runs of every graph to their rows.
    fn settle(&mut self) {
        for index in &mut self.graphs {
            settle(index, &mut self.rows);
        }
    }

    /// The position of `graph`'s node index, made (and moved to the front) if needed.
    #[inline]
    fn index_of<P, C>(&mut self, graph: &Graph<P, C>) -> usize {
        match self
            .graphs
            .iter()
            .position(|index| index.graph == graph.id())
        {
            Some(at) => at,
            None => {
                if self.graphs.len() == MAX_GRAPHS {
                    // The oldest index goes; its rows stay (a later run of that graph
                    // starts new rows, which the report merges by step name).
                    if let Some(mut oldest) = self.graphs.pop() {
                        settle(&mut oldest, &mut self.rows);
                        spread_window(&mut oldest, &mut self.window);
                    }
                }
                let nodes = graph.len().min(MAX_INDEXED_NODES);
                let varies = (0..graph.len() as u32).any(|n| {
                    matches!(
                        graph.kind(NodeId(n)),
                        NodeKind::Loop | NodeKind::Switch | NodeKind::Map
                    )
                });
                self.graphs.insert(
                    0,
                    Index {
                        graph: graph.id(),
                        rows: vec![NONE; nodes],
                        shape: if varies { Shape::Varies } else { Shape::Unseen },
                    },
                );
                self.see_breakers(graph);
                0
            }
        }
    }

    #[cold]
    fn new_row<P, C>(&mut self, graph: &Graph<P, C>, at: usize, node: NodeId) -> u32 {
        let indexed = (node.0 as usize) < self.graphs[at].rows.len();
        if !indexed || self.rows.len() >= MAX_STEPS {
            return *self.other.get_or_insert_with(|| {
                self.rows.push(StepRow {
                    step: OTHER_STEPS.to_string(),
                    node: u32::MAX,
                    ..StepRow::default()
                });
                self.window.push(WinRow::default());
                (self.rows.len() - 1) as u32
            });
        }
        self.rows.push(StepRow {
            step: graph.name(node).to_string(),
            node: node.0,
            ..StepRow::default()
        });
        self.window.push(WinRow::default());
        let row = (self.rows.len() - 1) as u32;
        self.graphs[at].rows[node.0 as usize] = row;
        row
    }

    /// The rows counted so far.
    pub(crate) fn rows(&mut self) -> impl Iterator<Item = &StepRow> {
        self.settle();
        self.rows.iter()
    }

    /// Moves the counts made since the last call into `into` (cleared first; rows that
    /// counted nothing since are left out), leaving the rows, zeroed, to count on.
    pub(crate) fn take_counts(&mut self, into: &mut Vec<StepRow>) {
        self.settle();
        into.clear();
        for row in self.rows.iter_mut().filter(|r| r.executions > 0) {
            into.push(std::mem::replace(
                row,
                StepRow {
                    step: row.step.clone(),
                    node: row.node,
                    ..StepRow::default()
                },
            ));
        }
    }

    /// Keeps the breakers of `graph` not seen yet (a graph is indexed when a pooled runner first
    /// runs it, or again after its index was dropped).
    #[cold]
    fn see_breakers<P, C>(&mut self, graph: &Graph<P, C>) {
        for (node, breaker) in graph.breakers() {
            let name = graph.name(node);
            let known = self
                .breakers
                .iter_mut()
                .find(|seen| Arc::ptr_eq(&seen.breaker, breaker));
            if let Some(seen) = known {
                seen.shared |= seen.step != name;
            } else if self.breakers.len() < MAX_BREAKERS {
                self.breakers.push(SeenBreaker {
                    breaker: Arc::clone(breaker),
                    step_id: node.0,
                    step: name.to_string(),
                    shared: false,
                });
            }
        }
    }

    /// The breakers seen so far.
    pub(crate) fn breakers(&self) -> &[SeenBreaker] {
        &self.breakers
    }
}

/// Adds the pending clean runs of `index` to its rows.
fn settle(index: &mut Index, rows: &mut [StepRow]) {
    if let Shape::Seen {
        rows: shape,
        pending,
        ..
    } = &mut index.shape
    {
        for &row in shape.iter() {
            let row = &mut rows[row as usize];
            row.executions += *pending;
            row.succeeded += *pending;
        }
        *pending = 0;
    }
}

/// Adds the clean runs of `index` not yet in the monitor's open bucket to it.
fn spread_window(index: &mut Index, window: &mut [WinRow]) {
    if let Shape::Seen { rows, windowed, .. } = &mut index.shape {
        for &row in rows.iter() {
            window[row as usize].ended += *windowed;
        }
        *windowed = 0;
    }
}

/// Whether `run` was clean: it succeeded, every step succeeded at its first attempt (the
/// run's counters say so in O(1)), and every record was kept. Such a run's records each add
/// one execution and one success, and nothing else, to their step's row.
#[inline]
fn is_clean<P, C>(run: &RunResult<'_, P, C>) -> bool {
    let c: &Counters = &run.counters;
    let steps = run.records.len() as u64;
    run.outcome == Outcome::Succeeded
        && run.records_dropped == 0
        && c.get(Counter::StepsRun) == steps
        && c.get(Counter::StepsSucceeded) == steps
        && c.get(Counter::StepsFailed)
            | c.get(Counter::StepsSkipped)
            | c.get(Counter::StepsAborted)
            | c.get(Counter::Retries)
            | c.get(Counter::CacheHits)
            | c.get(Counter::FallbacksUsed)
            | c.get(Counter::BreakerRejections)
            | c.get(Counter::UsageDenials)
            | c.get(Counter::UsageOverruns)
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use flujo_core::graph::{NoClock, StepError};
    use flujo_core::interp::{RunOptions, Runner, RunnerConfig};

    #[test]
    fn every_record_is_counted_under_its_step() {
        let g = Graph::<u64, ()>::build(|b| {
            let a = b.task("a", |x, _| Ok(x + 1));
            let c = b.task("c", |x, _| {
                if x % 2 == 0 {
                    Err(StepError::permanent("even"))
                } else {
                    Ok(x)
                }
            });
            b.sequence("s", &[a, c])
        })
        .unwrap();
        let mut runner = Runner::new(RunnerConfig::default());
        let mut t = Tallies::default();
        for i in 0..10 {
            let r = runner.run(&g, i, (), &NoClock, &RunOptions::default());
            t.count(&g, &r, true);
        }
        let mut rows: Vec<_> = t
            .rows()
            .map(|r| (r.step.clone(), r.executions, r.succeeded, r.failed))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![("a".to_string(), 10, 10, 0), ("c".to_string(), 10, 5, 5)]
        );
    }

    /// Each step's (executions, succeeded, failed, retries) counted record by record.
    fn reference(
        rows: &mut std::collections::BTreeMap<String, [u64; 4]>,
        g: &Graph<u64, ()>,
        records: &[StepRecord],
    ) {
        for rec in records {
            let mut row = StepRow::default();
            row.count_with(rec, |count, n| *count += n);
            let r = rows.entry(g.name(rec.node).to_string()).or_default();
            for (sum, add) in
                r.iter_mut()
                    .zip([row.executions, row.succeeded, row.failed, row.retries])
            {
                *sum += add;
            }
        }
    }

    fn counted(t: &mut Tallies) -> std::collections::BTreeMap<String, [u64; 4]> {
        let mut rows = std::collections::BTreeMap::new();
        for row in t.rows() {
            let r: &mut [u64; 4] = rows.entry(row.step.clone()).or_default();
            for (sum, add) in
                r.iter_mut()
                    .zip([row.executions, row.succeeded, row.failed, row.retries])
            {
                *sum += add;
            }
        }
        rows
    }

    #[test]
    fn clean_runs_counted_at_once_add_up_to_counting_every_record() {
        use flujo_core::graph::TaskConfig;
        use flujo_core::policy::{Backoff, RetryPolicy};
        // A parallel of two branches then a step that fails on multiples of 7 (retried once)
        // and another that fails on multiples of 5: clean and unclean runs interleave.
        let g = Graph::<u64, ()>::build(|b| {
            let a = b.task("a", |x, _| Ok(x + 1));
            let c = b.task("c", |x, _| Ok(x * 2));
            let both = b.parallel("both", &[a, c], |x, y| x + y, Default::default());
            let retry = RetryPolicy::new(2, Backoff::NONE).unwrap();
            let seven = b.task_with(
                "seven",
                |x, _| {
                    if x % 7 == 0 {
                        Err(StepError::transient("seven"))
                    } else {
                        Ok(x)
                    }
                },
                TaskConfig::new().retry(retry),
            );
            let five = b.task("five", |x, _| {
                if x % 5 == 0 {
                    Err(StepError::permanent("five"))
                } else {
                    Ok(x)
                }
            });
            b.sequence("s", &[both, seven, five])
        })
        .unwrap();
        // Another graph, run in between, so the first one's index is dropped and remade.
        let others: Vec<Graph<u64, ()>> = (0..MAX_GRAPHS)
            .map(|i| Graph::build(|b| b.task(&format!("o{i}"), |x, _| Ok(x))).unwrap())
            .collect();
        let mut runner = Runner::new(RunnerConfig::default());
        let (mut t, mut want) = (Tallies::default(), std::collections::BTreeMap::new());
        let mut clean = 0;
        for i in 0..200u64 {
            let r = runner.run(&g, i, (), &NoClock, &RunOptions::default());
            clean += u64::from(is_clean(&r));
            t.count(&g, &r, true);
            reference(&mut want, &g, r.records);
            if i % 50 == 49 {
                for o in &others {
                    let r = runner.run(o, i, (), &NoClock, &RunOptions::default());
                    t.count(o, &r, true);
                    reference(&mut want, o, r.records);
                }
            }
            if i == 120 {
                // A read in the middle settles what is pending; counting goes on after.
                assert_eq!(counted(&mut t), want);
            }
        }
        assert!(
            clean > 100 && clean < 200,
            "{clean} clean runs: both kinds are met"
        );
        assert_eq!(counted(&mut t), want);
        assert!(want["seven"][3] > 0, "retries are met");
    }

    #[test]
    fn taken_counts_are_the_counts_since_the_last_take() {
        let g = Graph::<u64, ()>::build(|b| b.task("a", |x, _| Ok(x))).unwrap();
        let mut runner = Runner::new(RunnerConfig::default());
        let mut t = Tallies::default();
        let mut taken = Vec::new();
        let mut run = |t: &mut Tallies, n| {
            for i in 0..n {
                let r = runner.run(&g, i, (), &NoClock, &RunOptions::default());
                t.count(&g, &r, true);
            }
        };
        run(&mut t, 3);
        t.take_counts(&mut taken);
        assert_eq!(taken.iter().map(|r| r.executions).collect::<Vec<_>>(), [3]);
        t.take_counts(&mut taken);
        assert!(taken.is_empty(), "nothing counted since");
        run(&mut t, 2);
        t.take_counts(&mut taken);
        assert_eq!(
            taken
                .iter()
                .map(|r| (r.step.as_str(), r.executions))
                .collect::<Vec<_>>(),
            [("a", 2)]
        );
    }

    #[test]
    fn graphs_past_the_index_bound_keep_their_counts_under_their_names() {
        let graphs: Vec<Graph<u64, ()>> = (0..MAX_GRAPHS + 2)
            .map(|i| Graph::build(|b| b.task(&format!("g{i}"), |x, _| Ok(x))).unwrap())
            .collect();
        let mut runner = Runner::new(RunnerConfig::default());
        let mut t = Tallies::default();
        // Every graph twice, round robin: the oldest indexes are dropped and remade.
        for _ in 0..2 {
            for g in &graphs {
                let r = runner.run(g, 0, (), &NoClock, &RunOptions::default());
                t.count(g, &r, true);
            }
        }
        for (i, _) in graphs.iter().enumerate() {
            let name = format!("g{i}");
            let runs: u64 = t
                .rows()
                .filter(|r| r.step == name)
                .map(|r| r.executions)
                .sum();
            assert_eq!(runs, 2, "{name}");
        }
        assert!(t.graphs.len() <= MAX_GRAPHS);
    }
}
