//! Instruction-count benches (iai-callgrind) that gate CI.
use iai_callgrind::main;

#[path = "iai/w5_ring_mpmc.rs"]
mod w5_ring_mpmc;
use w5_ring_mpmc::W5_ring_mpmc;

main!(library_benchmark_groups = W5_ring_mpmc);
