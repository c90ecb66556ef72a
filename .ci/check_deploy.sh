#!/usr/bin/env bash
# Checks the deployment and monitoring templates of docs/deploy/ (issue 17):
#   - promtool check config  docs/deploy/prometheus.yml   (loads alerts.yml beside it)
#   - promtool check rules   docs/deploy/alerts.yml
#   - promtool test rules    docs/deploy/alerts_test.yml  (the alerts fire when they should, not before)
#   - promtool check metrics on the exposition
#   - .ci/check_dashboard.py: the Grafana dashboard is valid JSON, its expressions parse as
#     PromQL, and it and the alert rules use only metrics the exposition has.
#
# usage: .ci/check_deploy.sh [EXPOSITION]
#   EXPOSITION: the text of a /metrics scrape (e.g. the demo's, saved by .ci/prometheus.sh).
#   Without it, .ci/sample_exposition.txt (written from the naming contract) is used.
#
# Needs promtool (Debian: apt-get install -y prometheus) and python3. No network, no
# server; every step is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

exposition="${1:-.ci/sample_exposition.txt}"
if [ $# -eq 0 ]; then
    echo "check_deploy: no exposition given; using $exposition (the naming contract's sample)"
fi
if ! command -v promtool >/dev/null; then
    echo "check_deploy: promtool not found (apt-get install -y prometheus)" >&2
    exit 1
fi
if [ ! -s "$exposition" ]; then
    echo "check_deploy: no exposition at $exposition" >&2
    exit 1
fi

t() { timeout 60 "$@"; }

t promtool check config docs/deploy/prometheus.yml
t promtool check rules docs/deploy/alerts.yml
t promtool test rules docs/deploy/alerts_test.yml
t promtool check metrics < "$exposition"
t python3 .ci/check_dashboard.py --promtool "$(command -v promtool)" \
    "$exposition" docs/deploy/grafana-dashboard.json docs/deploy/alerts.yml
# Every alert's runbook_url names a section of docs/monitoring.md (GitHub's heading anchors).
t python3 - docs/deploy/alerts.yml docs/monitoring.md <<'PY'
import re, sys
rules, doc = open(sys.argv[1]).read(), open(sys.argv[2]).read()
def slug(h):
    return re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
anchors = {slug(h) for h in re.findall(r"^#+\s+(.*)$", doc, re.M)}
links = re.findall(r"runbook_url:\s*\"docs/monitoring\.md#([^\"]+)\"", rules)
alerts = re.findall(r"^\s*-\s*alert:", rules, re.M)
missing = sorted(set(links) - anchors)
if len(links) != len(alerts) or missing:
    sys.exit(f"check_deploy: {len(alerts)} alerts, {len(links)} runbook links; "
             f"no section of {sys.argv[2]} for: {missing}")
print(f"check_deploy: {len(links)} runbook links, each to a section of {sys.argv[2]}")
PY
echo "check_deploy: ok"
