//! Instruction-count benches (iai-callgrind 0.16.1) that gate CI: our benches carry hard
//! `Ir` limits, and `.ci/check_iai.py` fails on any count of 0.
//! Run with `cargo bench -p flujo-benches --bench iai`.
// `library_benchmark_group!` wants a module per group, named like its file's, and a bench
// hands its whole setup state back so that its teardown is not counted.
#![allow(clippy::module_inception, clippy::type_complexity)]
use iai_callgrind::main;

/// The W1, W2 and W8 workloads, shared by three files of benches.
#[path = "shared/w1_w2_w8.rs"]
mod w1_w2_w8_shared;

#[path = "iai/w1_w2_w8.rs"]
mod w1_w2_w8;
use w1_w2_w8::W1_chain;
use w1_w2_w8::W2_chain_policies;
use w1_w2_w8::W8_context;
#[path = "iai/w5_ring_spsc.rs"]
mod w5_ring_spsc;
use w5_ring_spsc::W5_ring_spsc;
#[path = "iai/w5_ring_mpmc.rs"]
mod w5_ring_mpmc;
use w5_ring_mpmc::W5_ring_mpmc;
use w5_ring_mpmc::W5_ring_mpmc_batch;
#[path = "iai/w6_ticket_cells.rs"]
mod w6_ticket_cells;
use w6_ticket_cells::W6_ticket_cells;
#[path = "iai/w7_cache.rs"]
mod w7_cache;
use w7_cache::W7_cache_hit;
use w7_cache::W7_cache_key;
use w7_cache::W7_runtime_cache;
#[path = "iai/w9_telemetry.rs"]
mod w9_telemetry;
use w9_telemetry::W9_quantile;
use w9_telemetry::W9_telemetry;
#[path = "iai/w3_tree.rs"]
mod w3_tree;
use w3_tree::W3_tree;
use w3_tree::W4_fanout;
#[path = "iai/w1_executor_run.rs"]
mod w1_executor_run;
use w1_executor_run::W1_executor_run;
#[path = "iai/w10_breaker.rs"]
mod w10_breaker;
use w10_breaker::W10_breaker;
#[path = "iai/w18_cache_bypass.rs"]
mod w18_cache_bypass;
use w18_cache_bypass::W18_cache_bypass;
#[path = "iai/w14_typed_chain.rs"]
mod w14_typed_chain;
use w14_typed_chain::W14_typed_chain;
#[path = "iai/off.rs"]
mod off;
use off::W12_config_off;

main!(
    library_benchmark_groups = W1_chain,
    W2_chain_policies,
    W8_context,
    W5_ring_spsc,
    W5_ring_mpmc,
    W5_ring_mpmc_batch,
    W6_ticket_cells,
    W7_cache_hit,
    W7_cache_key,
    W7_runtime_cache,
    W9_telemetry,
    W9_quantile,
    W10_breaker,
    W3_tree,
    W4_fanout,
    W1_executor_run,
    W18_cache_bypass,
    W14_typed_chain,
    W12_config_off
);
