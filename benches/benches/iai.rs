//! Instruction-count benches (iai-callgrind) that gate CI.
use iai_callgrind::main;

#[path = "iai/w6_pool.rs"]
mod w6_pool;
use w6_pool::W6_pool;

main!(library_benchmark_groups = W6_pool);
