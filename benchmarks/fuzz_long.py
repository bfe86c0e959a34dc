"""The long fuzz run: the fuzz tests of `make test` (tests/test_fuzz_inputs.py, tests/test_fuzz_twin.py,
tests/test_decode_line_parity.py) with many
more, fresh random examples per test (hypothesis; CI runs 25 each).

    python benchmarks/fuzz_long.py              # 600 examples per test
    python benchmarks/fuzz_long.py --examples 5000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_args import at_least  # noqa: E402 - the scripts' shared flag checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=at_least(1), default=600, help="hypothesis examples per fuzz test")
    args = ap.parse_args()
    os.environ["PHASEWISE_FUZZ_EXAMPLES"] = str(args.examples)
    start = time.perf_counter()
    code = pytest.main(["-q", "-p", "no:cacheprovider", str(HERE.parent / "tests" / "test_fuzz_inputs.py"),
                        str(HERE.parent / "tests" / "test_fuzz_twin.py"),
                        str(HERE.parent / "tests" / "test_decode_line_parity.py")])
    print(f"{args.examples} examples per test: exit {code} in {time.perf_counter() - start:.0f} s")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
