"""Benchmark harness (the same as ``ivgf benchmark``): see ``python scripts/benchmark.py --help``.

python scripts/benchmark.py --preset tiny --size 64 --iterations 3 --out bench.json --plot bench
"""

import sys

from ivgf_hf.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
