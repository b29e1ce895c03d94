"""The seam between an environment and the world it lives in.

An :class:`~pytest_installperm.environment.Environment` is the same object in
both modes; what differs is its world:

* :mod:`.real`: a relocated interpreter in an on-disk sandbox, a backend that
  makes the lock plan hold for child processes, and ``run()``;
* :mod:`.fake`: pyfakefs, a fake non-root identity, a patched interpreter, and
  in-process ``call()``.

A :class:`Builder` makes environments (one per ``system()``/``venv()`` call);
each has its :class:`World`, which knows how to take a snapshot, run or call,
and show the code under test a real file. Everything else (roles, schemes,
the lock plan, the ``outside`` computation, the result) is written once, in
:mod:`pytest_installperm.environment`, :mod:`pytest_installperm.roles`,
:mod:`pytest_installperm.schemes` and :mod:`pytest_installperm.locks`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

if TYPE_CHECKING:
    from pytest_installperm.backends.contain.limits import Limits
    from pytest_installperm.changes import Changes
    from pytest_installperm.environment import Environment
    from pytest_installperm.fakefs_layouts import Layout
    from pytest_installperm.locks import LockSpec
    from pytest_installperm.run import Exit

Arg = Union[str, "os.PathLike[str]"]

#: ``system(mode=...)``: ``auto`` (in place where a mount namespace allows it,
#: else relocated), or one of the two forced.
MODES = ("auto", "in-place", "relocated")


@dataclass(frozen=True)
class Mode:
    """Which mode an environment runs in, and why (``env.mode``).

    ``in-place``: the real interpreter at its real path, the sandbox bound
    over its system scheme; ``relocated``: a copy in the sandbox;
    ``in-process``: pyfakefs, no child at all.
    """

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


class SandboxState(Protocol):
    """The before-state of a sandbox; :meth:`update` diffs and advances it."""

    def update(self) -> Changes: ...

    def deep_diff(self, top: Path) -> set[Path]: ...


@dataclass(frozen=True)
class BuildRequest:
    """What ``installperm.system()``/``venv()`` asked for, validated by the lock."""

    spec: LockSpec
    venv: bool
    system_site_packages: bool
    preinstalled: tuple[Arg, ...]
    #: World-specific choices: the base interpreter and backend (real world),
    #: the scheme layout (fake world). Each world refuses what it cannot honour.
    python: str | os.PathLike[str] | None = None
    backend: str | None = None
    layout: str | Layout | None = None
    #: The child's PATH (real world): directories or the role names
    #: ``system-scripts`` and ``user-scripts``; None for a real system's.
    path: tuple[str | os.PathLike[str], ...] | None = None
    #: One of :data:`MODES` (real world); None: the session's default.
    mode: str | None = None
    #: Installer programs the child runs by name (real world): made runnable
    #: for it from wherever they are installed here, first on its PATH.
    programs: tuple[str, ...] = ()


class World(Protocol):
    """What differs between the modes, for one environment."""

    #: ``env.backend``: how locks are enforced (``chmod``, ..., ``fakefs``).
    backend: str
    #: ``env.mode``: where the interpreter runs, and why.
    mode: Mode

    def snapshot(self) -> SandboxState:
        """The state the next run's changes are computed against."""

    def execute(
        self,
        argv: Sequence[Arg],
        env: Mapping[str, str | None] | None,
        timeout: float,
        *,
        network: bool = False,
        limits: Limits | None = None,
    ) -> tuple[tuple[str, ...], Exit]:
        """Run ``argv`` as a child (its path arguments made visible to it)."""

    def call(
        self, fn: Callable[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], Exit]:
        """Call ``fn`` in this process, in this world."""

    def visible(self, path: Path) -> Path:
        """Where the code under test (and a verdict) reads the real file ``path``."""

    def owner(self) -> tuple[int, int]:
        """The uid and gid the code under test runs as."""

    def remove(self) -> None:
        """Remove the sandbox, whatever the code under test left in it."""


class Builder(Protocol):
    """Makes environments in one world; the factory delegates to it."""

    def build(self, request: BuildRequest) -> Environment: ...

    def close(self) -> None: ...


__all__ = ["MODES", "Arg", "BuildRequest", "Builder", "Mode", "SandboxState", "World"]
