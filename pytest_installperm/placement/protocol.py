"""What a verdict reads from a result: a few small protocols, so that the
subprocess and the in-process (pyfakefs) modes hand their own objects to the
same verdicts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol


class SnapshotLike(Protocol):
    """The before-state of a sandbox (:class:`~pytest_installperm.changes.Snapshot`)."""

    def deep_diff(self, top: Path) -> set[Path]:
        """Paths under ``top`` whose stat differs from the snapshot (in-place rewrites)."""
        ...


class ChangesLike(Protocol):
    """What a run created, modified and deleted (:class:`~pytest_installperm.changes.Changes`)."""

    @property
    def created(self) -> frozenset[Path]: ...

    @property
    def modified(self) -> frozenset[Path]: ...

    @property
    def deleted(self) -> frozenset[Path]: ...

    def under(self, role: str | os.PathLike[str]) -> ChangesLike: ...


class EnvironmentLike(Protocol):
    """The environment a run happened in (:class:`~pytest_installperm.environment.Environment`).

    ``paths(role)`` gives the scheme (purelib, platlib, scripts, data,
    headers) of ``"system"`` or ``"user"``; ``roles`` maps role names to
    directories; ``python`` is the interpreter that generated scripts must
    name; ``root`` the sandbox; ``snapshot()`` the state the changes were
    computed against.
    """

    @property
    def python(self) -> Path: ...

    @property
    def root(self) -> Path: ...

    @property
    def roles(self) -> Mapping[str, Path]: ...

    def paths(
        self, role: str, base: str | os.PathLike[str] | None = None
    ) -> Mapping[str, Path]: ...

    def snapshot(self) -> SnapshotLike: ...


class Result(Protocol):
    """Everything a verdict reads from a run. :class:`RunResult` satisfies it.

    ``describe()`` returns the command, its exit status and the last lines of
    its output; it is appended to every failure message.
    """

    @property
    def returncode(self) -> int: ...

    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...

    @property
    def changes(self) -> ChangesLike: ...

    @property
    def outside(self) -> frozenset[Path]: ...

    @property
    def environment(self) -> EnvironmentLike: ...

    def describe(self, lines: int = ...) -> str: ...


__all__ = [
    "ChangesLike",
    "EnvironmentLike",
    "Result",
    "SnapshotLike",
]
