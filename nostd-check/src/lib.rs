//! The no_std proof. CI builds this crate for `thumbv7em-none-eabihf` (a Cortex-M4F with no
//! OS): it builds a small graph (a sequence around a parallel fan-out and a bounded loop) and
//! runs it with the core interpreter alone, with a tick counter for a clock. On the host,
//! `cargo test` runs the same function and checks its answer.
#![no_std]

use flujo_core::graph::{Graph, LoopOptions, ManualClock, ParallelOptions};
use flujo_core::interp::{Outcome, RunOptions, Runner};

/// Builds the demo graph and runs it on `input`; returns the output, or `None` when the run
/// does not succeed.
///
/// The pipeline: `x + 1`, then in parallel `x * 2` and `x * 3` reduced by sum, then a loop that
/// adds 10 until the value reaches 100 (bounded at 50 iterations).
pub fn run_demo(input: u32) -> Option<u32> {
    let graph = Graph::<u32, ()>::build(|b| {
        let inc = b.task("inc", |x: u32, _| Ok(x.saturating_add(1)));
        let double = b.task("double", |x: u32, _| Ok(x.saturating_mul(2)));
        let triple = b.task("triple", |x: u32, _| Ok(x.saturating_mul(3)));
        let fan = b.parallel(
            "fan",
            &[double, triple],
            |a: u32, c: u32| a.saturating_add(c),
            ParallelOptions::default(),
        );
        let add10 = b.task("add10", |x: u32, _| Ok(x.saturating_add(10)));
        let grow = b.loop_(
            "grow",
            add10,
            LoopOptions::new()
                .max_iterations(50)
                .until(|x: &u32, _, _| *x >= 100),
        );
        b.sequence("pipeline", &[inc, fan, grow])
    })
    .ok()?;
    let clock = ManualClock::default();
    let mut runner = Runner::new(Default::default());
    let result = runner.run(&graph, input, (), &clock, &RunOptions::default());
    match result.outcome {
        Outcome::Succeeded => result.output,
        Outcome::Failed | Outcome::Aborted => None,
    }
}

#[cfg(test)]
mod tests {
    use super::run_demo;

    #[test]
    fn the_demo_graph_computes_its_pipeline() {
        // (1 + 1) * 2 + (1 + 1) * 3 = 10, then +10 until >= 100: 100.
        assert_eq!(run_demo(1), Some(100));
        // (20 + 1) * 5 = 105 is already >= 100, but the loop body runs at least once: 115.
        assert_eq!(run_demo(20), Some(115));
    }
}
