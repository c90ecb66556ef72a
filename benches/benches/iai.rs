//! Instruction-count benches (iai-callgrind) that gate CI.
use iai_callgrind::main;

#[path = "iai/w9_telemetry.rs"]
mod w9_telemetry;

use w9_telemetry::{W9_quantile, W9_telemetry};

main!(library_benchmark_groups = W9_telemetry, W9_quantile);
