#!/usr/bin/env bash
# A real Prometheus scrapes the demo's metrics endpoint (issue 17).
#
# The demo (feature metrics-http) runs its work with its endpoint on 127.0.0.1 (a free port),
# prints its own report's figures, then keeps serving its final state. A Prometheus server
# (Debian's package) scrapes it every second; after two scrapes this script queries the HTTP
# API and fails unless `flujo_runs_total` and the `parse` step's latency histogram are there
# and equal the demo's own report, and unless `promtool check metrics` accepts a scraped
# exposition. Loopback only; every wait is bounded; both processes are killed on exit.
#
# Needs: prometheus and promtool (apt-get install prometheus), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20000}
WORK=$(mktemp -d)
DEMO_PID=
PROM_PID=
cleanup() {
    local status=$?
    # Only the two processes this script started (their exit by SIGTERM is expected).
    if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; fi
    if [ -n "$DEMO_PID" ]; then kill "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

fail() {
    echo "prometheus check FAILED: $*"
    echo "--- demo stdout (tail)"; tail -n 20 "$WORK/demo.out" 2>/dev/null || true
    echo "--- demo stderr (tail)"; tail -n 20 "$WORK/demo.err" 2>/dev/null || true
    echo "--- prometheus log (tail)"; tail -n 20 "$WORK/prometheus.log" 2>/dev/null || true
    exit 1
}

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local limit=$1
    shift
    local deadline=$(( $(date +%s) + limit ))
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

command -v prometheus >/dev/null || fail "no prometheus (apt-get install prometheus)"
command -v promtool >/dev/null || fail "no promtool"
prometheus --version 2>&1 | head -n 1

echo "--- build the demo with the metrics endpoint"
cargo build --release -p flujo-runtime --features metrics-http --example demo

echo "--- run the demo ($RUNS runs), metrics on 127.0.0.1"
# It lingers (serving its final state) far longer than this script needs; killed at the end.
target/release/examples/demo --runs "$RUNS" --metrics-addr 127.0.0.1:0 --linger-secs 300 \
    > "$WORK/demo.out" 2> "$WORK/demo.err" &
DEMO_PID=$!
demo_done() {
    kill -0 "$DEMO_PID" 2>/dev/null || fail "the demo exited early"
    grep -qs '^metrics: serving ' "$WORK/demo.out"
}
wait_for 300 demo_done || fail "the demo did not finish its work within 300 s"
grep -q '^all counts add up$' "$WORK/demo.out" || fail "the demo's own counts do not add up"
REPORT_LINE=$(grep '^metrics-report ' "$WORK/demo.out")
echo "demo: $REPORT_LINE"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< "$REPORT_LINE"; }
COMPLETED=$(field runs_completed)
PARSE_SAMPLES=$(field parse_latency_samples)
TARGET=$(sed -n 's|^metrics: serving http://\([^/]*\)/metrics.*|\1|p' "$WORK/demo.out")
[ -n "$COMPLETED" ] && [ -n "$PARSE_SAMPLES" ] && [ -n "$TARGET" ] || fail "no report line"
case "$TARGET" in 127.0.0.1:*) ;; *) fail "the demo serves on $TARGET, not loopback" ;; esac

echo "--- promtool check metrics on the exposition"
curl -sS --max-time 10 "http://$TARGET/metrics" > "$WORK/exposition.txt" \
    || fail "scraping http://$TARGET/metrics"
promtool check metrics < "$WORK/exposition.txt" || fail "promtool check metrics"
# Kept for the deploy templates' check (.ci/check_deploy.sh: every metric the dashboard and
# the alert rules name is in this exposition).
mkdir -p target && cp "$WORK/exposition.txt" target/flujo-metrics.txt
echo "exposition: $(wc -l < "$WORK/exposition.txt") lines, $(wc -c < "$WORK/exposition.txt") bytes"

echo "--- start prometheus, scraping $TARGET every second"
PROM_PORT=$(free_port)
PROM="http://127.0.0.1:$PROM_PORT"
cat > "$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: flujo-demo
    static_configs:
      - targets: ["$TARGET"]
EOF
promtool check config "$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    > "$WORK/prometheus.log" 2>&1 &
PROM_PID=$!

query() { # an instant query's JSON answer
    curl -sS --max-time 5 -G "$PROM/api/v1/query" --data-urlencode "query=$1"
}
# The value of an instant query's single sample (empty when none).
value_of() {
    query "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["status"] == "success", r
res = r["data"]["result"]
print(res[0]["value"][1] if len(res) == 1 else "")'
}
two_scrapes() {
    kill -0 "$PROM_PID" 2>/dev/null || fail "prometheus exited"
    local n
    n=$(value_of 'count_over_time(up{job="flujo-demo"}[1m])' 2>/dev/null) || return 1
    [ -n "$n" ] && [ "$n" -ge 2 ]
}
wait_for 60 two_scrapes || fail "prometheus did not scrape the demo twice within 60 s"
[ "$(value_of 'up{job="flujo-demo"}')" = 1 ] || fail "up != 1"

echo "--- query the Prometheus HTTP API"
ANSWER=$(query 'flujo_runs_total{result="completed"}')
echo "flujo_runs_total{result=\"completed\"}: $ANSWER"
GOT=$(value_of 'flujo_runs_total{result="completed"}')
[ "$GOT" = "$COMPLETED" ] || fail "flujo_runs_total{result=\"completed\"} = '$GOT', the demo's report: $COMPLETED"

GOT=$(value_of 'flujo_step_latency_seconds_count{step="parse"}')
[ "$GOT" = "$PARSE_SAMPLES" ] || fail "parse latency count = '$GOT', the demo's report: $PARSE_SAMPLES"
GOT=$(value_of 'flujo_step_latency_seconds_bucket{step="parse",le="+Inf"}')
[ "$GOT" = "$PARSE_SAMPLES" ] || fail "parse +Inf bucket = '$GOT', the demo's report: $PARSE_SAMPLES"
BUCKETS=$(value_of 'count(flujo_step_latency_seconds_bucket{step="parse"})')
[ "$BUCKETS" = 60 ] || fail "parse has $BUCKETS buckets, not 60"
ANSWER=$(query 'histogram_quantile(0.99, flujo_step_latency_seconds_bucket{step="parse"})')
echo "histogram_quantile(0.99, flujo_step_latency_seconds_bucket{step=\"parse\"}): $ANSWER"
P99=$(value_of 'histogram_quantile(0.99, flujo_step_latency_seconds_bucket{step="parse"})')
python3 -c "import sys, math; v = float('$P99'); sys.exit(0 if math.isfinite(v) and 0 < v < 69 else 1)" \
    || fail "parse p99 '$P99' is not a latency"

echo "prometheus check passed: flujo_runs_total = $COMPLETED, parse latency count = $PARSE_SAMPLES, p99 = $P99 s"
