#!/usr/bin/env python3
"""Ratios of our criterion benches to their peers, from one run of the `peers` target.

usage: benches/ratios.py [--criterion DIR] [--before FILE] [--save FILE] [--all]

Reads the median (point estimate, ns per iteration) of every
`<DIR>/<group>/<function>/new/estimates.json` (DIR defaults to target/criterion) and prints a
Markdown table: one row per comparison in COMPARISONS below (ours against one peer, with the
goal if the workload has one), the ratio being ours / peer (below 1: ours is faster).

- `--before FILE`: a JSON file of earlier ratios, `{"W7_cache_hit/flujo_fast vs
  quick_cache_ahash": 1.17, ...}` (the keys are the rows' `comparison` column); adds a
  "before" column.
- `--save FILE`: writes this run's ratios in that format, to be the next run's `--before`.
- `--all`: also prints every median found, comparisons or not.

A comparison whose medians are missing (the bench did not run) is printed as "-"; it never
fails. Which figures are noisy (two-thread ones on a shared VM) is for the reader: the table
says which are information.

To grow it into docs/performance.md's generator, add rows to COMPARISONS; each row names its
workload id exactly as BENCHMARKS.md does.
"""
import argparse
import json
import pathlib
import sys

# (group, ours, peer, goal): goal is the highest ratio the workload aims for, or None when the
# row is information only.
COMPARISONS = [
    ("W1_chain", "flujo", "loop", None),
    ("W1_executor_run", "latency", "core_runner", None),
    ("W1_executor_run", "throughput", "core_runner", None),
    ("W1_executor_run", "low_memory", "core_runner", None),
    ("W2_chain_policies", "flujo", "no_policies", None),
    ("W3_tree", "flujo", "rayon_join", 1.0),
    ("W3_tree", "flujo", "chili", None),
    ("W3_tree", "flujo", "sequential", None),
    ("W3_tree_2thread", "flujo", "rayon_join", None),
    ("W3_tree_2thread", "flujo", "chili", None),
    ("W4_fanout", "flujo", "rayon_scope", 1.0),
    ("W4_fanout_2thread", "flujo", "rayon_scope", None),
    ("W5_ring_spsc", "flujo", "rtrb", None),
    ("W5_ring_spsc", "flujo", "heapless", None),
    ("W5_ring_mpmc", "flujo", "crossbeam", 1.0),
    ("W5_ring_mpmc_batch", "flujo", "crossbeam_one_at_a_time", None),
    ("W5_ring_spsc_2thread", "flujo", "rtrb", None),
    ("W5_ring_mpmc_2thread", "flujo", "crossbeam", None),
    ("W7_cache_hit", "flujo", "quick_cache", None),
    ("W7_cache_hit", "flujo_fast", "quick_cache_ahash", 1.0),
    ("W7_cache_hit", "flujo", "moka", None),
    ("W7_cache_key", "flujo", "blake3", None),
    ("W7_runtime_cache", "flujo", "quick_cache_sync", 1.0),
    ("W7_runtime_cache", "flujo", "moka_sync", None),
    ("W8_context", "flujo", "deep_clone", None),
    ("W9_telemetry", "flujo", "hdrhistogram", None),
    ("W9_quantile", "flujo", "hdrhistogram", None),
    ("W10_breaker", "flujo", "failsafe", None),
    ("W13_outage", "flujo", "no_outage", 1.5),
    ("W13_blocking", "flujo", "no_blocking", None),
    ("W14_typed_chain", "flujo_typed", "flujo_enum", None),
    ("W18_cache_bypass", "bypass", "cache_off", 1.1),
    ("W18_cache_bypass", "cache_on", "cache_off", None),
    ("submit_latency", "flujo_submit_1thread", "rayon_spawn_channel_1thread", 1.0),
    ("submit_latency", "flujo_submit_default", "rayon_spawn_channel_default", None),
    ("submit_latency", "flujo_submit_1thread", "tokio_spawn_1thread", None),
]


def medians(root):
    """{"group/function": median ns} for every estimate under `root`."""
    found = {}
    for path in sorted(root.glob("*/*/new/estimates.json")):
        function_dir = path.parent.parent
        bench_id = f"{function_dir.parent.name}/{function_dir.name}"
        found[bench_id] = json.loads(path.read_text())["median"]["point_estimate"]
    return found


def show_ns(ns):
    """A duration in the unit that suits it."""
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def rows(found):
    """(comparison, ours ns, peer ns, ratio, goal) per row of COMPARISONS."""
    for group, ours, peer, goal in COMPARISONS:
        ours_ns = found.get(f"{group}/{ours}")
        peer_ns = found.get(f"{group}/{peer}")
        ratio = ours_ns / peer_ns if ours_ns and peer_ns else None
        yield f"{group}/{ours} vs {peer}", ours_ns, peer_ns, ratio, goal


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", default="target/criterion", type=pathlib.Path)
    parser.add_argument("--before", type=pathlib.Path)
    parser.add_argument("--save", type=pathlib.Path)
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args()

    found = medians(args.criterion)
    if not found:
        sys.exit(f"ratios: no estimates under {args.criterion}: did the peers bench run?")
    before = json.loads(args.before.read_text()) if args.before else {}

    head = ["comparison", "ours", "peer", "ratio", "goal"]
    if before:
        head.insert(3, "before")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    saved = {}
    for comparison, ours_ns, peer_ns, ratio, goal in rows(found):
        if ratio is not None:
            saved[comparison] = round(ratio, 3)
        verdict = "information" if goal is None else f"<= {goal}"
        if goal is not None and ratio is not None:
            verdict += ": met" if ratio <= goal else ": NOT met"
        cells = [comparison, show_ns(ours_ns), show_ns(peer_ns),
                 "-" if ratio is None else f"{ratio:.2f}x", verdict]
        if before:
            old = before.get(comparison)
            cells.insert(3, "-" if old is None else f"{old:.2f}x")
        print("| " + " | ".join(cells) + " |")

    if args.all:
        print()
        print("| bench | median |")
        print("|---|---|")
        for bench_id, ns in found.items():
            print(f"| {bench_id} | {show_ns(ns)} |")
    if args.save:
        args.save.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
