//! Graph building from arbitrary operations (builds or returns the error the model expects,
//! never panics), then runs against a reference evaluator.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flujo_core::check::graph::run(data));
