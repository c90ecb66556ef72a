//! Shared workloads of the flujo-rs benchmarks: each builds the same input for the criterion
//! bench (`peers`) and the instruction-count bench (`iai`), and checks its result.
