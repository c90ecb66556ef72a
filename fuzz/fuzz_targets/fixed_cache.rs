//! Random operation programs against `FixedCache` and its simple model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flujo_core::check::fixed_cache::run(data));
