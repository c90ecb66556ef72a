//! Control nodes: loops (`loop_node`: bounded, with an exit predicate) and switches
//! (`switch`: a selector picks one arm).

use super::{stamp, Exec};

use crate::context::{Context, Frame};
use crate::graph::{Clock, UNTIMED};
use crate::interp::host::Host;
use crate::interp::records::{LoopExit, StepRecord};
use crate::interp::results::{ErrorKind, Stop};
use crate::telemetry::EventSink;
use crate::telemetry::StepOutcome;

impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
    pub(super) fn loop_node(
        &mut self,
        id: u32,
        l: usize,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let lp = &g.loops[l];
        let start = stamp(self.clock, self.clock.measures_latency());
        let mut rec = StepRecord::new(id);
        let mut x = input;
        let exit = loop {
            x = match self.node(lp.body, x, frame) {
                Ok(y) => y,
                Err(stop) => {
                    rec.outcome = if stop.abort {
                        StepOutcome::Aborted
                    } else {
                        StepOutcome::Failed
                    };
                    rec.error_class = Some(stop.class);
                    rec.latency_ticks = stamp(self.clock, start != UNTIMED).saturating_sub(start);
                    self.records.push(rec);
                    return Err(stop);
                }
            };
            rec.attempts += 1;
            if let Some(pred) = &lp.exit {
                if pred(&x, frame.get(), rec.attempts) {
                    break LoopExit::Predicate;
                }
            }
            if rec.attempts >= lp.max_iterations {
                break LoopExit::Bound;
            }
        };
        rec.loop_exit = Some(exit);
        rec.latency_ticks = stamp(self.clock, start != UNTIMED).saturating_sub(start);
        self.records.push(rec);
        Ok(x)
    }

    pub(super) fn switch(
        &mut self,
        id: u32,
        b: usize,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let br = &g.switches[b];
        let key = (br.selector)(&input, frame.get());
        let arm = match br.keys.iter().position(|k| *k == key) {
            Some(i) => Some(g.children[br.arms.start as usize + i]),
            None => br.default,
        };
        match arm {
            Some(arm) => self.node(arm, input, frame),
            None => Err(self.fail(id, ErrorKind::NoArmMatched { key }, false)),
        }
    }
}
