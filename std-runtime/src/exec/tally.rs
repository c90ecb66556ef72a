//! Exact per-step counts, kept by each worker from every record of every run (the report's
//! step rows), keyed by graph and node with a hash that costs a few instructions.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use flujo_core::graph::{Graph, NodeId};
use flujo_core::interp::{StepOutcome, StepRecord};

use crate::report::{StepRow, OTHER_STEPS};

/// Distinct steps a worker counts apart; the rest share the row [`OTHER_STEPS`].
const MAX_STEPS: usize = 4096;

/// A multiply-rotate hash for the (graph, node) key: it is two integers, hashed per record.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Exact counts per step of the runs one worker made.
#[derive(Default)]
pub(crate) struct Tallies {
    rows: HashMap<(usize, u32), StepRow, BuildHasherDefault<KeyHasher>>,
}

impl Tallies {
    /// Counts `records` of a run of `graph`.
    pub(crate) fn count<P, C>(&mut self, graph: &Graph<P, C>, records: &[StepRecord]) {
        let id = std::ptr::from_ref(graph) as usize;
        for rec in records {
            let key = (id, rec.node.0);
            let row = match self.rows.get_mut(&key) {
                Some(row) => row,
                None => self.new_row(graph, key, rec.node),
            };
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

    #[cold]
    fn new_row<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        key: (usize, u32),
        node: NodeId,
    ) -> &mut StepRow {
        let (key, name) = if self.rows.len() < MAX_STEPS {
            (key, graph.name(node))
        } else {
            ((0, u32::MAX), OTHER_STEPS)
        };
        self.rows.entry(key).or_insert_with(|| StepRow {
            step: name.to_string(),
            node: key.1,
            ..StepRow::default()
        })
    }

    /// The rows counted so far.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &StepRow> {
        self.rows.values()
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
