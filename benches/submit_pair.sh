#!/usr/bin/env bash
# The goal of `submit_latency` at 1 worker, `flujo_submit_1thread <= rayon_spawn_channel_1thread`,
# measured over REPS runs of the criterion pair (default 6), each run flujo then the peer in one
# process: prints both times and their ratio per run, then the median ratio.
#
#   bash benches/submit_pair.sh [REPS]
#
# One run is not enough on a shared VM: the hand-off between two vCPUs has slow spells of
# seconds that hit whichever side is being measured (single runs here read 0.49 to 2.45 while
# the median read 0.98). Compare medians of runs made on one machine in one sitting.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-6}
bin=$(cargo bench -q -p flujo-benches --bench peers --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "peers" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "submit_pair.sh: no peers bench binary" >&2; exit 1; }

# Criterion's point estimate (the middle of `time: [low mid high]`), in ns.
mid_ns() {
    awk '/time:/ {
        v = $4; u = $5
        if (u == "ps") v /= 1000; else if (u == "µs") v *= 1000; else if (u == "ms") v *= 1e6
        print v
    }'
}

ratios=()
for i in $(seq "$reps"); do
    out=$("$bin" --bench 'submit_latency/(flujo_submit_1thread|rayon_spawn_channel_1thread)$' 2>/dev/null)
    read -r flujo rayon <<< "$(echo "$out" | mid_ns | tr '\n' ' ')"
    ratio=$(awk -v f="$flujo" -v r="$rayon" 'BEGIN { printf "%.3f", f / r }')
    printf "run %d: flujo %.0f ns, rayon %.0f ns, ratio %s\n" "$i" "$flujo" "$rayon" "$ratio"
    ratios+=("$ratio")
done
printf "%s\n" "${ratios[@]}" | sort -g |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median ratio over %d runs: %.3f (goal <= 1.0)\n", NR, m }'
