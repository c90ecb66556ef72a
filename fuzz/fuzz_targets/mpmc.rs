//! Random operation programs against the mpmc structure and its simple model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flujo_core::check::mpmc::run(data));
