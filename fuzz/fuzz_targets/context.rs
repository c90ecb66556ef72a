//! Context merges of every strategy against a model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flujo_core::check::context::run(data));
