//! Instruction-count benches (iai-callgrind) that gate CI.
fn main() {}
