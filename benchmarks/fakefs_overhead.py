"""Overhead of ``installperm_fakefs`` per test, beyond pyfakefs's own setup.

Run: ``.venv/bin/python benchmarks/fakefs_overhead.py [REPEAT]`` (default 31).
Prints medians in milliseconds, side by side: a plain ``Patcher`` (what the
``fs`` fixture does), ours building one locked system environment, their
difference (goal: <= 2 ms), and one ``env.call()`` of a no-op.
"""

from __future__ import annotations

import json
import sys

from pytest_installperm.fakefs import measure_overhead


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 31
    numbers = measure_overhead(repeat)
    print(json.dumps({k: round(v, 3) for k, v in sorted(numbers.items())}, indent=2))


if __name__ == "__main__":
    main()
