#!/usr/bin/env bash
# The submit-then-wait cycle of `submit_latency` (1 worker) with its two threads pinned:
# `split`, the submitter on CPU 0 and the pool thread on CPU 1; `same`, both on CPU 0 (what
# the kernel sometimes does by itself on a wake-up, and keeps for a while). Prints ns per
# cycle for flujo and the rayon peer, each mode REPS times (default 3), interleaved.
#
#   bash benches/colocation.sh [REPS]
#
# Needs Linux, two CPUs and `taskset` (util-linux). Timings on a shared VM are noisy: compare
# figures of one run only.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
n=${SAMPLES:-1000000}
cargo build -q --release -p flujo-benches --example submit_latency
bin=target/release/examples/submit_latency

one() { # peer mode
    "$bin" --mode cycle --peer "$1" --workers 1 --samples "$n" > /dev/null &
    local pid=$!
    sleep 0.03 # the pool thread exists once the executor is built
    local start end tid cpu
    start=$(date +%s%N)
    for tid in $(ls "/proc/$pid/task"); do
        cpu=0
        if [ "$tid" != "$pid" ] && [ "$2" = split ]; then cpu=1; fi
        taskset -p -c "$cpu" "$tid" > /dev/null 2>&1 || true
    done
    wait "$pid"
    end=$(date +%s%N)
    echo "$1 $2 $(((end - start) / n))"
}

for _ in $(seq "$reps"); do
    for mode in split same; do
        for peer in flujo_submit rayon_spawn_channel; do
            one "$peer" "$mode"
        done
    done
done | awk '{k = $1 " " $2; v[k] = v[k] " " $3} END {for (k in v) print k ":" v[k] " ns/cycle"}' | sort
