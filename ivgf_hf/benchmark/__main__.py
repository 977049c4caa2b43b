"""``python -m ivgf_hf.benchmark --case JSON``: run one case of ``ivgf benchmark``, print its result as JSON on the
last line (what :func:`ivgf_hf.benchmark.run_in_subprocess` reads)."""

import json
import sys

from .cases import run_case


def main(argv: list) -> int:
    """Run the case given as ``--case JSON``; exit status 2 on any other arguments."""
    if len(argv) != 2 or argv[0] != "--case":
        print("usage: python -m ivgf_hf.benchmark --case JSON  (one case of `ivgf benchmark`)", file=sys.stderr)
        return 2
    print(json.dumps(run_case(json.loads(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
