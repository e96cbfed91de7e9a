"""Run every benchmark in turn: `python -m benchmarks` (or `make bench`).

Each prints its own figures. They build their generated data once under `.hubmeter-bench/` or
`benchmarks/.data/` and reuse it, so the first run is much slower than the next ones.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["bench_usage", "bench_costs", "bench_attribution", "bench_api"]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        # A process each, so one benchmark's peak memory is not another's.
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
