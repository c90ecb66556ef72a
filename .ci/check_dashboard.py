#!/usr/bin/env python3
"""Checks that the deployment templates reference only metrics the exposition has.

usage: check_dashboard.py [--promtool PATH] <exposition.txt> <grafana-dashboard.json> [<alerts.yml> ...]
e.g.   check_dashboard.py target/flujo-metrics.txt docs/deploy/grafana-dashboard.json docs/deploy/alerts.yml

- The dashboard must be valid JSON with a `panels` list and `schemaVersion`; every panel
  target must carry an `expr`.
- Every `flujo_...` token in a dashboard expression (panel targets, rows' nested panels,
  template variable queries) and in an alert or recording rule's `expr` must be a metric of
  the exposition: a name from its `# TYPE name type` lines, or a sample name of it. A
  histogram `h` provides `h_bucket`, `h_sum` and `h_count`; a counter `c` (OpenMetrics
  writes `# TYPE c counter` for samples `c_total`) provides `c_total` too. A missing name
  fails, with every missing name and where it is used.
- With `--promtool PATH` (or `--promtool auto`: promtool from PATH if there is one) every
  dashboard expression is also parsed as PromQL: the Grafana variables are replaced by plain
  values and the expressions written as recording rules to a temporary file for
  `promtool check rules`.

The exposition file is the text a `/metrics` scrape returns (Prometheus text format 0.0.4 or
OpenMetrics)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

TOKEN = re.compile(r"\bflujo_[a-z0-9_]*[a-z0-9]")
TYPE_LINE = re.compile(r"^#\s*TYPE\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\w+)")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)")
# Grafana's variables, replaced by plain values for the PromQL parse.
GRAFANA_VARS = [
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("${DS_PROMETHEUS}", "prometheus"),
]


def fail(msg):
    sys.exit(f"check_dashboard: {msg}")


def exposition_names(path):
    """The series names an exposition provides."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        fail(f"cannot read the exposition {path}: {e}")
    names = set()
    families = 0
    for line in text.splitlines():
        t = TYPE_LINE.match(line)
        if t:
            families += 1
            name, kind = t.group(1), t.group(2)
            names.add(name)
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
            elif kind == "summary":
                names.update({name + "_sum", name + "_count"})
            elif kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
            continue
        if line.startswith("#") or not line.strip():
            continue
        s = SAMPLE.match(line)
        if s:
            names.add(s.group(1))
    if families == 0:
        fail(f"{path} has no `# TYPE` line: is it an exposition?")
    return names


def dashboard_exprs(path):
    """(where, expression) for every query of the dashboard."""
    try:
        dash = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        fail(f"{path} is not valid JSON: {e}")
    if not isinstance(dash, dict) or not isinstance(dash.get("panels"), list):
        fail(f"{path}: no `panels` list")
    if not isinstance(dash.get("schemaVersion"), int):
        fail(f"{path}: no integer `schemaVersion`")
    out = []
    ids = set()

    def walk(panels):
        for p in panels:
            pid = p.get("id")
            if pid in ids:
                fail(f"{path}: panel id {pid} is used twice")
            ids.add(pid)
            title = p.get("title", "?")
            for t in p.get("targets", []):
                expr = t.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    fail(f"{path}: panel {title!r} target {t.get('refId')} has no expr")
                out.append((f"panel {title!r} ({t.get('refId')})", expr))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(q, str) and q.strip():
            out.append((f"variable ${var.get('name')}", q))
    if not out:
        fail(f"{path}: no expressions")
    return out


def rule_exprs(path):
    """(where, expression) for every rule of a Prometheus rules file."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    try:
        import yaml
    except ImportError:
        yaml = None
    out = []
    if yaml is not None:
        doc = yaml.safe_load(text)
        for group in (doc or {}).get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert") or rule.get("record") or "?"
                out.append((f"{path}: rule {name}", str(rule.get("expr", ""))))
    else:
        # Without PyYAML: the `expr:` values, one-line or block (indented below it).
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)expr:\s*(.*)$", line)
            if not m:
                continue
            indent, value = len(m.group(1)), m.group(2)
            if value.strip() in ("|", ">", "|-", ">-"):
                body = []
                for nxt in lines[i + 1:]:
                    if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                        break
                    body.append(nxt)
                value = "\n".join(body)
            out.append((f"{path}: line {i + 1}", value))
    if not out:
        fail(f"{path}: no rules")
    return out


def promql_parse(promtool, exprs):
    """Parses every expression with `promtool check rules`; fails with promtool's output."""
    def plain(expr):
        for var, value in GRAFANA_VARS:
            expr = expr.replace(var, value)
        # Every other variable ($job, $instance, $step, ${name}) stands in a label matcher.
        return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "x", expr)

    rules = []
    for i, (where, expr) in enumerate(exprs):
        if expr.lstrip().startswith("label_values("):
            # A Grafana function, not PromQL: parse its metric selector.
            m = re.match(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", expr)
            if not m:
                fail(f"{where}: cannot read {expr!r}")
            expr = m.group(1)
        rules.append({"record": f"check:expr_{i}", "expr": plain(expr)})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboard_rules.yml")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            fail("a dashboard expression is not valid PromQL:\n" + r.stdout + r.stderr)


def main():
    args = sys.argv[1:]
    promtool = None
    if args[:1] == ["--promtool"]:
        if len(args) < 2:
            sys.exit(__doc__)
        promtool = args[1]
        args = args[2:]
        if promtool == "auto":
            promtool = shutil.which("promtool")
    if len(args) < 2:
        sys.exit(__doc__)
    exposition, dashboard, rule_files = args[0], args[1], args[2:]
    have = exposition_names(exposition)

    dash_exprs = dashboard_exprs(dashboard)
    exprs = list(dash_exprs)
    for rf in rule_files:
        exprs += rule_exprs(rf)

    missing = {}
    used = set()
    for where, expr in exprs:
        for name in TOKEN.findall(expr):
            used.add(name)
            if name not in have:
                missing.setdefault(name, []).append(where)
    if missing:
        lines = [f"  {name}: used by {', '.join(sorted(set(w)))}" for name, w in sorted(missing.items())]
        fail(f"{len(missing)} metric name(s) used but not in {exposition}:\n" + "\n".join(lines))
    if promtool:
        promql_parse(promtool, dash_exprs)
    print(f"check_dashboard: {len(exprs)} expressions ({len(dash_exprs)} in the dashboard"
          f"{', ' + str(len(exprs) - len(dash_exprs)) + ' in rules' if rule_files else ''}) use "
          f"{len(used)} names, all in {exposition}"
          f"{'; the dashboard parses as PromQL' if promtool else ''}")


if __name__ == "__main__":
    main()
