"""The in-process mode: ``installperm_fakefs``, the real world's environments on pyfakefs.

The fixture is an :class:`~pytest_installperm.environment.InstallPerm` over
the fake world (:mod:`pytest_installperm.world.fake`), so its environments and
results are the very classes of the subprocess mode; this module adds the
fixture's type, with the helpers that only a fake filesystem has (``fs``,
``as_root()``, ``add_real_directory()``, ``activate()``), and the overhead
measurement of the benchmark. See docs/fakefs.md.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.fake_filesystem_unittest import Patcher

from pytest_installperm.environment import Environment, InstallPerm
from pytest_installperm.errors import FakefsError
from pytest_installperm.schemes import SCHEME_KEYS
from pytest_installperm.world.fake import FakeBuilder, FakeWorld
from pytest_installperm.world.fake_traps import (
    BACKEND,
    FAKE_GID,
    FAKE_ROOT,
    FAKE_UID,
    check_conflicts,
)
from pytest_installperm.world.fake_tree import FakeSnapshot


class FakeInstallPerm(InstallPerm):
    """The ``installperm_fakefs`` fixture: :class:`InstallPerm` over pyfakefs."""

    def __init__(self, fixturenames: Iterable[str] = ()) -> None:
        self._fake = FakeBuilder(fixturenames)
        super().__init__(world=self._fake)

    @property
    def fs(self) -> FakeFilesystem:
        """The fake filesystem (started on first use)."""
        return self._fake.fs

    def as_root(self) -> AbstractContextManager[None]:
        """Act as root in the fake filesystem, as a package manager would."""
        return self._fake.as_root()

    def add_real_directory(
        self, source: str | os.PathLike[str], target: str | os.PathLike[str] | None = None
    ) -> Path:
        """Map a real directory, readable and listable by the fake user."""
        return self._fake.add_real_directory(source, target)

    def activate(self, env: Environment) -> None:
        """Make the interpreter answer for ``env`` (the last built one by default)."""
        if not isinstance(env.world, FakeWorld):
            raise FakefsError(f"activate({env!r}): not an installperm_fakefs environment")
        self._fake.activate(env.world)


def measure_overhead(repeat: int = 31) -> dict[str, float]:
    """Median milliseconds of a plain pyfakefs setup and of ours, side by side.

    ``plain_ms``: ``Patcher()`` set up and torn down, what the ``fs`` fixture
    does. ``fakefs_ms``: ``installperm_fakefs`` building one locked system
    environment, then closing. ``overhead_ms`` is their difference, the cost
    per test beyond pyfakefs's own (goal: <= 2 ms). ``call_ms`` is one
    ``env.call()`` of a no-op (two walks of the fake tree). Each also has a
    ``*_cpu_ms`` twin measured in process CPU time, which a busy machine does
    not inflate. Call it outside a test that already uses pyfakefs.
    """
    if repeat < 1:
        raise ValueError(f"repeat={repeat}: must be at least 1")

    def plain() -> None:
        patcher = Patcher()
        patcher.setUp()
        patcher.tearDown()

    def ours() -> None:
        factory = FakeInstallPerm()
        try:
            factory.system(locked=("system",))
        finally:
            factory.close()

    def one_call() -> None:
        env.call(_no_op)

    def medians(fn: Callable[[], None]) -> tuple[float, float]:
        fn()  # warm pyfakefs's module cache and ours
        wall, cpu = [], []
        for _ in range(repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start)
        return statistics.median(wall) * 1000, statistics.median(cpu) * 1000

    plain_ms, plain_cpu = medians(plain)
    fakefs_ms, fakefs_cpu = medians(ours)
    factory = FakeInstallPerm()
    try:
        env = factory.system(locked=("system",))
        call_ms, call_cpu = medians(one_call)
    finally:
        factory.close()
    return {
        "repeat": float(repeat),
        "plain_ms": plain_ms,
        "fakefs_ms": fakefs_ms,
        "overhead_ms": fakefs_ms - plain_ms,
        "call_ms": call_ms,
        "plain_cpu_ms": plain_cpu,
        "fakefs_cpu_ms": fakefs_cpu,
        "overhead_cpu_ms": fakefs_cpu - plain_cpu,
        "call_cpu_ms": call_cpu,
    }


def _no_op() -> None:
    """What :func:`measure_overhead` calls: nothing, to time ``call()`` itself."""


__all__ = [
    "BACKEND",
    "FAKE_GID",
    "FAKE_ROOT",
    "FAKE_UID",
    "SCHEME_KEYS",
    "FakeInstallPerm",
    "FakeSnapshot",
    "check_conflicts",
    "measure_overhead",
]
