#!/usr/bin/env python3
"""Time FastWARC on a WARC file the way `harman bench ingest` times harman's reader, so the two
can be compared in the same run on the same machine (BENCHMARKS.md).

Modes (as in the peers' bench_warc.py of the shared anchors):
  raw  = iterate every record and read its whole block (parse_http=False)
  http = also parse HTTP headers and read the decoded payload (parse_http=True, auto_decode='all')
Prints records, wall and CPU seconds (medians of --repeat), and records/s and MB/s of file per
CPU-second (as `harman bench ingest` does: on shared VMs wall time includes stolen time).

  python3 -m venv /tmp/fw-venv && /tmp/fw-venv/bin/pip install FastWARC==2.0.1
  /tmp/fw-venv/bin/python scripts/bench_fastwarc.py ../shared/data/bench/pages.warc.gz
"""

import argparse
import os
import statistics
import time

from fastwarc.warc import ArchiveIterator


def scan(path: str, mode: str) -> int:
    n = 0
    if mode == "raw":
        for rec in ArchiveIterator(path, parse_http=False):
            rec.reader.read()
            n += 1
    else:
        for rec in ArchiveIterator(path, parse_http=True, auto_decode="all"):
            rec.reader.read()
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--modes", default="raw,http", help="comma-separated, in this order")
    args = ap.parse_args()
    print(f"{'input / mode':<28} {'records':>8} {'file MB':>9} {'wall s':>8} {'cpu s':>8} {'records/s':>12} {'file MB/s':>12}")
    for path in args.files:
        mb = os.path.getsize(path) / 1e6
        for mode in args.modes.split(","):
            times, cpu = [], []
            for _ in range(args.repeat):
                start, cpu_start = time.perf_counter(), time.thread_time()
                n = scan(path, mode)
                cpu.append(time.thread_time() - cpu_start)
                times.append(time.perf_counter() - start)
            wall, t = statistics.median(times), statistics.median(cpu)
            label = f"{os.path.basename(path)[:10]} (FastWARC {mode})"
            print(f"{label:<28} {n:>8} {mb:>9.1f} {wall:>8.3f} {t:>8.3f} {n / t:>12.0f} {mb / t:>12.1f}")


if __name__ == "__main__":
    main()
