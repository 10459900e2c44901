"""``make bench``: run every benchmark in this folder, one process each, then check the
performance targets against the figures this run wrote (``loadtests.bench.targets``), and set
them against the run the README quotes (``loadtests.bench.reproduce``).

python -m loadtests.bench [NAME ...]     # e.g. router failover; default: all of them
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from loadtests.bench import reproduce, targets
from loadtests.bench.common import RESULTS_DIR

HERE = Path(__file__).parent


def main() -> int:
    wanted = set(sys.argv[1:])
    failures = 0
    started = time.time()
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        failures += subprocess.call([sys.executable, "-m", f"loadtests.bench.{path.stem}"]) != 0
    print(f"\n=== targets ===\n{targets.report(RESULTS_DIR, started)}", flush=True)
    print(f"\n=== against the README's run ===\n{reproduce.report(RESULTS_DIR, started)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
