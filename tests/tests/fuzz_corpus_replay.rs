//! Replays every committed fuzz corpus file through its differential program on stable, so a
//! regression that the fuzzer once found stays found without nightly or libFuzzer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files = 0usize;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "corpus file {} fails", path.display());
        files += 1;
    }
    assert!(
        files > 0,
        "no corpus files for {target} in {}",
        dir.display()
    );
}

#[test]
fn arena_corpus_replays() {
    replay("arena", flujo_core::check::arena::run);
}

#[test]
fn breaker_corpus_replays() {
    replay("breaker", flujo_core::check::breaker::run);
}

#[test]
fn context_corpus_replays() {
    replay("context", flujo_core::check::context::run);
}

#[test]
fn fixed_cache_corpus_replays() {
    replay("fixed_cache", flujo_core::check::fixed_cache::run);
}

#[test]
fn graph_corpus_replays() {
    replay("graph", flujo_core::check::graph::run);
}

#[test]
fn histogram_corpus_replays() {
    replay("histogram", flujo_core::check::histogram::run);
}

#[test]
fn mpmc_corpus_replays() {
    replay("mpmc", flujo_core::check::mpmc::run);
}

#[test]
fn priority_queues_corpus_replays() {
    replay("priority_queues", flujo_runtime::check::run);
}

#[test]
fn spsc_corpus_replays() {
    replay("spsc", flujo_core::check::spsc::run);
}
