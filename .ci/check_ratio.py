#!/usr/bin/env python3
"""Gate on a ratio of two criterion benchmarks of one run: fails when the first's median is
above `max_ratio` times the second's.

usage: check_ratio.py <criterion dir> <group/function> <group/function> <max_ratio>
e.g.   check_ratio.py target/criterion W13_outage/flujo W13_outage/no_outage 1.5

Reads criterion's `<dir>/<group>/<function>/new/estimates.json` (the median's point
estimate, ns per iteration). A missing estimate fails: the bench did not run."""
import json
import pathlib
import sys

if len(sys.argv) != 5:
    sys.exit(__doc__)
root = pathlib.Path(sys.argv[1])
num_id, den_id, max_ratio = sys.argv[2], sys.argv[3], float(sys.argv[4])


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
verdict = "ok" if ratio <= max_ratio else "FAILED"
print(f"check_ratio: {num_id} / {den_id} = {ratio:.2f} (limit {max_ratio}): {verdict}")
if ratio > max_ratio:
    sys.exit(1)
