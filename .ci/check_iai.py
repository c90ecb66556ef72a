#!/usr/bin/env python3
"""Gate on iai-callgrind summaries: every benchmark must have a non-zero instruction count
(a stripped binary reads as 0 and iai still says "Ok") and no hard-limit regression.
Prints one line per benchmark: group/id and Ir."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/iai")
summaries = sorted(root.rglob("summary.json"))
if not summaries:
    sys.exit(f"check_iai: no summary.json under {root}: did the iai bench run?")

failures = []
for path in summaries:
    data = json.loads(path.read_text())
    name = data.get("module_path") or str(path)
    if data.get("id"):
        name += f"::{data['id']}"
    for profile in data.get("profiles", []):
        total = profile["summaries"]["total"]
        metrics = (total.get("summary", {}).get("Callgrind", {}).get("Ir", {})
                   .get("metrics", {}))
        # "Left" is the new run alone; "Both" is [new, baseline] when an old run is present.
        new = metrics.get("Left") or (metrics.get("Both") or [{}])[0]
        ir = new.get("Int")
        print(f"{name:60} Ir={ir}")
        if not ir:
            failures.append(f"{name}: instruction count is {ir!r} (stripped symbols?)")
        for regression in total.get("regressions", []):
            failures.append(f"{name}: limit exceeded: {regression}")

if failures:
    print("\ncheck_iai: FAILED", file=sys.stderr)
    for failure in failures:
        print(f"  {failure}", file=sys.stderr)
    sys.exit(1)
print(f"check_iai: {len(summaries)} benchmarks, all counts non-zero, no limit exceeded")
