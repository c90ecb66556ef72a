//! Exact per-step counts, kept by each worker from every record of every run (the report's
//! step rows): a few instructions per record, through a dense node index per graph.

use std::sync::Arc;

use flujo_core::graph::{Graph, NodeId};
use flujo_core::interp::StepRecord;
use flujo_core::policy::Breaker;
use flujo_core::telemetry::StepOutcome;

use crate::report::{StepRow, OTHER_STEPS};

/// Distinct steps a worker counts apart; the rest share the row [`OTHER_STEPS`].
const MAX_STEPS: usize = 4096;

/// Graphs a worker keeps a node index for (the most recently run first).
const MAX_GRAPHS: usize = 8;

/// Nodes a graph's index covers; the nodes past it count in [`OTHER_STEPS`].
const MAX_INDEXED_NODES: usize = 1 << 20;

/// Distinct circuit breakers a worker keeps for the report; later ones are not reported.
const MAX_BREAKERS: usize = 256;

/// No row yet.
const NONE: u32 = u32::MAX;

/// A circuit breaker met in a graph a worker ran, kept so the report can read its own
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

/// Exact counts per step of the runs one worker made.
#[derive(Default)]
pub(crate) struct Tallies {
    /// Per graph id, node index -> row (`NONE`: not seen yet); most recent first.
    graphs: Vec<(u32, Vec<u32>)>,
    rows: Vec<StepRow>,
    /// The row of [`OTHER_STEPS`], once made.
    other: Option<u32>,
    /// The breakers of the graphs indexed so far, one entry per breaker.
    breakers: Vec<SeenBreaker>,
}

impl Tallies {
    /// Counts `records` of a run of `graph`.
    pub(crate) fn count<P, C>(&mut self, graph: &Graph<P, C>, records: &[StepRecord]) {
        if records.is_empty() {
            return;
        }
        let at = self.index_of(graph);
        for rec in records {
            let node = rec.node.0 as usize;
            let slot = self.graphs[at].1.get(node).copied();
            let row = match slot {
                Some(NONE) | None => self.new_row(graph, at, rec.node),
                Some(row) => row,
            };
            let row = &mut self.rows[row as usize];
            row.executions += 1;
            match rec.outcome {
                StepOutcome::Succeeded => row.succeeded += 1,
                StepOutcome::Failed => row.failed += 1,
                StepOutcome::Skipped => row.skipped += 1,
                StepOutcome::Aborted => row.aborted += 1,
            }
            if rec.loop_exit.is_none() {
                row.retries += u64::from(rec.attempts.saturating_sub(1));
            }
            row.cache_hits += u64::from(rec.cache_hit);
            row.fallbacks += u64::from(rec.fallback_used);
        }
    }

    /// The position of `graph`'s node index, made (and moved to the front) if needed.
    #[inline]
    fn index_of<P, C>(&mut self, graph: &Graph<P, C>) -> usize {
        match self.graphs.iter().position(|(id, _)| *id == graph.id()) {
            Some(at) => at,
            None => {
                if self.graphs.len() == MAX_GRAPHS {
                    // The oldest index goes; its rows stay (a later run of that graph
                    // starts new rows, which the report merges by step name).
                    self.graphs.pop();
                }
                let nodes = graph.len().min(MAX_INDEXED_NODES);
                self.graphs.insert(0, (graph.id(), vec![NONE; nodes]));
                self.see_breakers(graph);
                0
            }
        }
    }

    #[cold]
    fn new_row<P, C>(&mut self, graph: &Graph<P, C>, at: usize, node: NodeId) -> u32 {
        let indexed = (node.0 as usize) < self.graphs[at].1.len();
        if !indexed || self.rows.len() >= MAX_STEPS {
            return *self.other.get_or_insert_with(|| {
                self.rows.push(StepRow {
                    step: OTHER_STEPS.to_string(),
                    node: u32::MAX,
                    ..StepRow::default()
                });
                (self.rows.len() - 1) as u32
            });
        }
        self.rows.push(StepRow {
            step: graph.name(node).to_string(),
            node: node.0,
            ..StepRow::default()
        });
        let row = (self.rows.len() - 1) as u32;
        self.graphs[at].1[node.0 as usize] = row;
        row
    }

    /// The rows counted so far.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &StepRow> {
        self.rows.iter()
    }

    /// Moves the counts made since the last call into `into` (cleared first; rows that
    /// counted nothing since are left out), leaving the rows, zeroed, to count on.
    pub(crate) fn take_counts(&mut self, into: &mut Vec<StepRow>) {
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

    /// Keeps the breakers of `graph` not seen yet (a graph is indexed when a worker first
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
            t.count(&g, r.records);
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
}

#[cfg(test)]
mod take_tests {
    use super::*;
    use flujo_core::graph::NoClock;
    use flujo_core::interp::{RunOptions, Runner, RunnerConfig};

    #[test]
    fn taken_counts_are_the_counts_since_the_last_take() {
        let g = Graph::<u64, ()>::build(|b| b.task("a", |x, _| Ok(x))).unwrap();
        let mut runner = Runner::new(RunnerConfig::default());
        let mut t = Tallies::default();
        let mut taken = Vec::new();
        let mut run = |t: &mut Tallies, n| {
            for i in 0..n {
                let r = runner.run(&g, i, (), &NoClock, &RunOptions::default());
                t.count(&g, r.records);
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
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use flujo_core::graph::NoClock;
    use flujo_core::interp::{RunOptions, Runner, RunnerConfig};

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
                t.count(g, r.records);
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
