#!/usr/bin/env python3
"""Gate on a ratio of two criterion benchmarks of one run: fails when the first's median is
above `max_ratio` times the second's.

usage: check_ratio.py [--info] <criterion dir>[,<criterion dir>...] <group/function> <group/function> <max_ratio>
e.g.   check_ratio.py target/criterion W13_outage/flujo W13_outage/no_outage 1.5

With --info the ratio is printed against `max_ratio` but never fails (a figure for
information, such as W13_blocking on the 2-thread VM); a missing estimate still fails.

Several criterion dirs (comma-separated, each from its own run of both benches): the ratio of
each run is printed, and the gate is on their median, so that one noisy run (a sleeping
thread woken late by the host) does not decide alone, while a real regression, which moves
every run, still fails.

Reads criterion's `<dir>/<group>/<function>/new/estimates.json` (the median's point
estimate, ns per iteration). A missing estimate fails: the bench did not run."""
import json
import pathlib
import sys

args = sys.argv[1:]
info = args[:1] == ["--info"]
if info:
    args = args[1:]
if len(args) != 4:
    sys.exit(__doc__)
roots = [pathlib.Path(d) for d in args[0].split(",") if d]
if not roots:
    sys.exit(__doc__)
num_id, den_id, max_ratio = args[1], args[2], float(args[3])


def median_ns(root, bench_id):
    path = root / bench_id / "new" / "estimates.json"
    if not path.is_file():
        sys.exit(f"check_ratio: no {path}: did the bench {bench_id} run?")
    ns = json.loads(path.read_text())["median"]["point_estimate"]
    if not ns > 0:
        sys.exit(f"check_ratio: {bench_id}: median {ns!r} ns is not a time")
    return ns


ratios = []
for root in roots:
    num, den = median_ns(root, num_id), median_ns(root, den_id)
    ratios.append(num / den)
    print(f"{root}:")
    print(f"  {num_id:40} median {num / 1e3:12.1f} µs")
    print(f"  {den_id:40} median {den / 1e3:12.1f} µs")
    print(f"  ratio {num / den:.2f}")
ratio = sorted(ratios)[len(ratios) // 2]
what = f"{num_id} / {den_id} = {ratio:.2f}"
if len(ratios) > 1:
    what += f" (the median of {len(ratios)} runs: {', '.join(f'{r:.2f}' for r in ratios)})"
verdict = "ok" if ratio <= max_ratio else "over"
if info:
    print(f"check_ratio: {what} (goal {max_ratio}, information): {verdict}")
    sys.exit(0)
verdict = "ok" if ratio <= max_ratio else "FAILED"
print(f"check_ratio: {what} (limit {max_ratio}): {verdict}")
if ratio > max_ratio:
    sys.exit(1)
