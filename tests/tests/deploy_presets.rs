//! The deployment presets of `docs/deploy/presets/` (issue 17) load, each to exactly its
//! preset: `latency.toml` to `OptimizationConfig::latency()`, and so on. They are the
//! commented templates of `docs/config/` (symbolic links), so a host deploying from
//! `docs/deploy/` and one reading `docs/configuration.md` get the same files; a copy put in
//! place of a link must stay byte-for-byte the same.
#![cfg(feature = "serde")]

use flujo_runtime::config::OptimizationConfig;

/// (name, `docs/deploy/presets/<name>.toml`, `docs/config/<name>.toml`, the preset).
type Preset = (
    &'static str,
    &'static str,
    &'static str,
    fn() -> OptimizationConfig,
);

const PRESETS: [Preset; 3] = [
    (
        "latency",
        include_str!("../../docs/deploy/presets/latency.toml"),
        include_str!("../../docs/config/latency.toml"),
        OptimizationConfig::latency,
    ),
    (
        "throughput",
        include_str!("../../docs/deploy/presets/throughput.toml"),
        include_str!("../../docs/config/throughput.toml"),
        OptimizationConfig::throughput,
    ),
    (
        "low_memory",
        include_str!("../../docs/deploy/presets/low_memory.toml"),
        include_str!("../../docs/config/low_memory.toml"),
        OptimizationConfig::low_memory,
    ),
];

#[test]
fn deploy_presets_load_as_their_presets() {
    for (name, text, _, preset) in PRESETS {
        let cfg = OptimizationConfig::from_toml_str(text)
            .unwrap_or_else(|e| panic!("docs/deploy/presets/{name}.toml does not load: {e}"));
        assert_eq!(
            cfg,
            preset(),
            "docs/deploy/presets/{name}.toml drifted from OptimizationConfig::{name}()"
        );
        assert_eq!(cfg.validate(), Ok(()), "{name}");
    }
}

/// The presets differ pairwise, so a file loaded as the wrong preset fails the test above.
#[test]
fn presets_differ_pairwise() {
    for (i, (a, _, _, pa)) in PRESETS.iter().enumerate() {
        for (b, _, _, pb) in &PRESETS[i + 1..] {
            assert_ne!(pa(), pb(), "presets {a} and {b} are equal");
        }
    }
}

#[test]
fn deploy_presets_are_the_config_templates() {
    for (name, deploy, config, _) in PRESETS {
        assert_eq!(
            deploy, config,
            "docs/deploy/presets/{name}.toml differs from docs/config/{name}.toml"
        );
    }
}

/// Each file says when to use its preset, in its first line.
#[test]
fn deploy_presets_say_when_to_use_them() {
    for (name, text, _, _) in PRESETS {
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!(
                "# flujo-rs runtime configuration, preset {name}: for "
            )),
            "docs/deploy/presets/{name}.toml: first line {first:?}"
        );
    }
}
