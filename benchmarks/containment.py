"""Per-run cost of containment: the same ``execute()`` with and without it.

Interleaves the two so that machine load hits both alike, and prints medians
and minimums. Run as root (privdrop) or as a normal user (chmod):

    .venv/bin/python benchmarks/containment.py [RUNS]
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace

import pytest

from pytest_installperm.environment import InstallPerm
from pytest_installperm.run import execute
from pytest_installperm.session import Session
from pytest_installperm.world.real import RealWorld


def extra_ms_median(runs: int = 30, basetemp: str | None = None) -> float | None:
    """Median per-run price of containment (``/bin/true``, contained minus
    plain, interleaved), in ms: the benchmark's ``containment_ms_median``."""
    session = Session(basetemp=basetemp)
    factory = InstallPerm(session)
    try:
        try:
            env = factory.system(externally_managed=False, locked=("system",))
        except pytest.skip.Exception:  # no namespace here
            return None
        world = env.world
        assert isinstance(world, RealWorld)
        extra = []
        for _ in range(runs):
            spent = {}
            for contained in (False, True):
                launch = world.launch(["/bin/true"])
                if not contained:
                    launch = replace(launch, containment=None)
                start = time.perf_counter()
                execute(launch, env=env.child_env(), cwd=env.sandbox.work, timeout=30)
                spent[contained] = time.perf_counter() - start
            extra.append((spent[True] - spent[False]) * 1000)
        return round(statistics.median(extra), 3)
    finally:
        factory.close()
        session.close()


def main(runs: int) -> None:
    session = Session()
    factory = InstallPerm(session)
    try:
        env = factory.system(externally_managed=False, locked=("system",))
        world = env.world
        assert isinstance(world, RealWorld)
        for program in (["/bin/true"], [str(env.python), "-c", "pass"]):
            times: dict[str, list[float]] = {"plain": [], "contained": []}
            for _ in range(runs):
                for name, found in times.items():
                    launch = world.launch(program)
                    if name == "plain":
                        launch = replace(launch, containment=None)
                    start = time.perf_counter()
                    status = execute(
                        launch, env=env.child_env(), cwd=env.sandbox.work, timeout=30
                    ).returncode
                    found.append(time.perf_counter() - start)
                    assert status == 0, program
            plain, contained = (statistics.median(times[k]) * 1000 for k in times)
            low_plain, low_contained = (min(times[k]) * 1000 for k in times)
            print(
                f"{' '.join(program[-2:]):>28}  backend {env.backend}: median "
                f"{plain:.2f} -> {contained:.2f} ms (+{contained - plain:.2f}); "
                f"min {low_plain:.2f} -> {low_contained:.2f} ms "
                f"(+{low_contained - low_plain:.2f})"
            )
    finally:
        factory.close()
        session.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
