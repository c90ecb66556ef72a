#!/usr/bin/env bash
# Regenerates docs/performance.md and the off-table of docs/configuration.md from one bench
# run: the criterion `peers` target (and W16_metrics_render, feature `metrics`), the iai
# target, then benches/perfdoc.py. Arguments go to criterion, e.g.
#   bash benches/perfdoc.sh --warm-up-time 1 --measurement-time 2
# Run it on a quiet machine: criterion's times are noisy when other work shares the cores.
# PERFDOC_NOTE="..." adds a note on the run (say, the machine was shared) to the page.
set -euo pipefail
cd "$(dirname "$0")/.."

rm -rf target/criterion target/iai
cargo bench -p flujo-benches --bench peers -- "$@"
# W16 (feature `metrics`) checks its output against prometheus-client's before it measures; a
# failure there leaves its figures out of the page (listed as missing), not the whole page.
cargo bench -p flujo-benches --features metrics --bench peers -- '^W16_metrics_render/' "$@" ||
    echo "perfdoc.sh: W16_metrics_render failed; the page lists its figures as missing" >&2
cargo bench -p flujo-benches --bench iai -- --save-summary=json
python3 .ci/check_iai.py target/iai
python3 benches/perfdoc.py --write \
    --note "criterion arguments: ${*:-none (defaults)}; ${PERFDOC_NOTE:-machine load not noted}"
