//! Random acquire/record/release/advance-time programs against the circuit breaker and its
//! sequential model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flujo_core::check::breaker::run(data));
