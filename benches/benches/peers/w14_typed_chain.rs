//! W14_typed_chain (criterion twin of the iai group): a three-stage chain of differently
//! typed stages, typed steps (`flujo_typed`) beside the same stages matched by hand over one
//! enum payload (`flujo_enum`); one run per iteration on a warmed core runner.
use std::hint::black_box;

use criterion::Criterion;
use flujo_core::graph::{Graph, NoClock};
use flujo_core::interp::{RunOptions, Runner, RunnerConfig};

#[path = "../shared/w14_typed_chain.rs"]
mod shared;
use shared::{enum_graph, expected, input, typed_graph, Msg};

/// Runs both chains over a range of inputs and checks every output, so a wrong lowering
/// fails before it is measured.
fn check(g: &Graph<Msg, ()>) -> Runner<Msg, ()> {
    let mut runner = Runner::new(RunnerConfig::default());
    for i in 0..100 {
        let r = runner.run(g, input(i), (), &NoClock, &RunOptions::default());
        assert_eq!(r.output, Some(Msg::Score(expected(i))));
    }
    runner
}

/// The criterion group `W14_typed_chain`.
pub fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("W14_typed_chain");
    for (id, g) in [("flujo_typed", typed_graph()), ("flujo_enum", enum_graph())] {
        let mut runner = check(&g);
        let opts = RunOptions::default();
        group.bench_function(id, |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                let r = runner.run(&g, black_box(input(i)), (), &NoClock, &opts);
                black_box(r.output)
            });
        });
    }
    group.finish();
}
