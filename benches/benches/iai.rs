//! Instruction-count benches (iai-callgrind) that gate CI.
use iai_callgrind::main;

#[path = "iai/w10_breaker.rs"]
mod w10_breaker;
use w10_breaker::W10_breaker;

main!(library_benchmark_groups = W10_breaker);
