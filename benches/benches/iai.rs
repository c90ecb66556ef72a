//! Instruction-count benches (iai-callgrind) that gate CI.
use iai_callgrind::main;

#[path = "iai/w5_ring_spsc.rs"]
mod w5_ring_spsc;
use w5_ring_spsc::W5_ring_spsc;

main!(library_benchmark_groups = W5_ring_spsc);
