#!/usr/bin/env python3
"""Gate on a ratio of two criterion benchmarks of one run: fails when the first's median is
above `max_ratio` times the second's.

usage: check_ratio.py [--info] <criterion dir> <group/function> <group/function> <max_ratio>
e.g.   check_ratio.py target/criterion W13_outage/flujo W13_outage/no_outage 1.5

With --info the ratio is printed against `max_ratio` but never fails (a figure for
information, such as W13_blocking on the 2-thread VM); a missing estimate still fails.

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
root = pathlib.Path(args[0])
num_id, den_id, max_ratio = args[1], args[2], float(args[3])


def median_ns(bench_id):
    path = root / bench_id / "new" / "estimates.json"
    if not path.is_file():
        sys.exit(f"check_ratio: no {path}: did the bench {bench_id} run?")
    ns = json.loads(path.read_text())["median"]["point_estimate"]
    if not ns > 0:
        sys.exit(f"check_ratio: {bench_id}: median {ns!r} ns is not a time")
    return ns


num, den = median_ns(num_id), median_ns(den_id)
ratio = num / den
print(f"{num_id:40} median {num / 1e3:12.1f} µs")
print(f"{den_id:40} median {den / 1e3:12.1f} µs")
verdict = "ok" if ratio <= max_ratio else "over"
if info:
    print(f"check_ratio: {num_id} / {den_id} = {ratio:.2f} (goal {max_ratio}, information): {verdict}")
    sys.exit(0)
verdict = "ok" if ratio <= max_ratio else "FAILED"
print(f"check_ratio: {num_id} / {den_id} = {ratio:.2f} (limit {max_ratio}): {verdict}")
if ratio > max_ratio:
    sys.exit(1)
