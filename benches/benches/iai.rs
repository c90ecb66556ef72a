//! Instruction-count benches (iai-callgrind) that gate CI.
use iai_callgrind::main;

#[path = "iai/w7_cache.rs"]
mod w7_cache;
use w7_cache::{W7_cache_hit, W7_cache_key};

main!(library_benchmark_groups = W7_cache_hit, W7_cache_key);
