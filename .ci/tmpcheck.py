#!/usr/bin/env python3
"""Run a command and fail if it leaves new entries in the temporary directories.

Usage: python3 .ci/tmpcheck.py [--dir DIR ...] -- COMMAND [ARGS...]

Lists /tmp, /var/tmp and /dev/shm (or the --dir ones) before and after the
command; prints every new entry and exits 1 if there is any, else exits with
the command's own status. pytest's own basetemp (``pytest-of-<user>``) is
ignored: pytest keeps the last three runs there on purpose.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

DEFAULT_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
IGNORED_PREFIXES = ("pytest-of-",)


def listing(dirs: list[str]) -> set[str]:
    found = set()
    for directory in dirs:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        found.update(
            os.path.join(directory, n) for n in names if not n.startswith(IGNORED_PREFIXES)
        )
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", action="append", dest="dirs", help="directory to watch")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    dirs = args.dirs or list(DEFAULT_DIRS)
    before = listing(dirs)
    status = subprocess.call(command)
    stray = sorted(listing(dirs) - before)
    if stray:
        print(
            f"tmpcheck: {len(stray)} stray entr{'y' if len(stray) == 1 else 'ies'} left by "
            f"{' '.join(command)}:",
            file=sys.stderr,
        )
        for path in stray:
            print(f"  {path}", file=sys.stderr)
        return 1
    print(f"tmpcheck: no stray entries in {', '.join(dirs)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
