//! Random operation programs against the histogram structure and its simple model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flujo_core::check::histogram::run(data));
