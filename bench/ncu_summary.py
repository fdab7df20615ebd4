#!/usr/bin/env python3
"""Summarize an Nsight Compute CSV of decode's kernels (device-run.sh's `ncu-decode` part writes them).

  python3 bench/ncu_summary.py ncu-llama-2-7b-b1.csv            kernels by total time
  python3 bench/ncu_summary.py ncu-llama-2-7b-b1.csv --seq 0 12 the 12 launches from the first, in order

Each row of the CSV is one metric of one profiled launch (ncu --csv); the launches were timed one at a
time (ncu serializes them), so a sum over a decode step leaves out PDL's overlap but not much else (S13-1:
within ~2% of the step's wall time at batch 16). Needs the metrics gpu__time_duration.sum and
dram__bytes_read.sum; dram__bytes_write.sum is shown when present.
"""
import argparse
import collections
import csv
import re
import sys

SCALE = {'': 1.0, 'nsecond': 1e-3, 'ns': 1e-3, 'usecond': 1.0, 'us': 1.0, 'msecond': 1e3, 'ms': 1e3,
         'byte': 1.0, 'Kbyte': 1e3, 'Mbyte': 1e6, 'Gbyte': 1e9}


def launches(path):
    """The profiled launches in order: (name, grid, block, {metric: value in µs or bytes})."""
    with open(path, newline='') as f:
        rows = [line for line in f if line.startswith('"')]  # ncu's own messages come first
    out = collections.OrderedDict()
    for r in csv.DictReader(rows):
        k = out.setdefault(int(r['ID']), (r['Kernel Name'], r['Grid Size'], r['Block Size'], {}))
        unit = r['Metric Unit']
        if unit not in SCALE:
            sys.exit(f"{path}: unknown unit {unit!r} for {r['Metric Name']}")
        k[3][r['Metric Name']] = float(r['Metric Value'].replace(',', '')) * SCALE[unit]
    return list(out.values())


def short(name):
    name = re.sub(r'^void |<?unnamed>::|\(anonymous namespace\)::', '', name)
    return re.sub(r'[<(].*', '', name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('csv')
    ap.add_argument('--seq', nargs=2, type=int, metavar=('FIRST', 'COUNT'), help='list launches in order')
    a = ap.parse_args()
    ks = launches(a.csv)
    if not ks:
        sys.exit(f'{a.csv}: no profiled launches (did --launch-skip pass the end of the run?)')
    t = lambda m: m.get('gpu__time_duration.sum', 0.0)
    if a.seq:
        first, count = a.seq
        for i, (name, grid, block, m) in enumerate(ks[first:first + count], first):
            rd, wr = m.get('dram__bytes_read.sum', 0.0), m.get('dram__bytes_write.sum', 0.0)
            print(f'{i:5d} {name[:100]:100s} {grid:>14s} {block:>12s} {t(m):8.2f} µs  read {rd / 1e6:8.2f} MB'
                  f'  write {wr / 1e6:6.2f} MB  {rd / t(m) / 1e3 if t(m) else 0:6.0f} GB/s')
        return
    total = sum(t(m) for *_, m in ks)
    agg = collections.OrderedDict()
    for name, grid, _, m in ks:
        g = agg.setdefault((short(name), grid), [0, 0.0, 0.0])
        g[0] += 1
        g[1] += t(m)
        g[2] += m.get('dram__bytes_read.sum', 0.0)
    print(f'{len(ks)} launches, {total:.1f} µs in all')
    print(f"{'kernel':45s} {'grid':>14s} {'n':>5s} {'µs':>9s} {'share':>6s} {'µs each':>8s} {'MB read each':>12s} {'GB/s':>6s}")
    for (name, grid), (n, us, rd) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f'{name[:45]:45s} {grid:>14s} {n:5d} {us:9.1f} {100 * us / total:5.1f}% {us / n:8.2f}'
              f' {rd / n / 1e6:12.2f} {rd / us / 1e3 if us else 0:6.0f}')


if __name__ == '__main__':
    main()
