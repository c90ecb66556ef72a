//! Random operation programs against the runtime's priority queues and their simple model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flujo_runtime::check::run(data));
