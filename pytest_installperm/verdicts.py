"""The placement verdicts as methods, for any result class to mix in.

:class:`~pytest_installperm.run.RunResult`, the result of both worlds, mixes
them in; the world decides how a wheel path is made visible to the run
(:meth:`PlacementAssertions._wheel_for_verdict`: in-process, a fake copy).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from pytest_installperm.placement import Result


class PlacementAssertions:
    """``assert_installed``, ``assert_not_installed``, ``assert_untouched`` and
    ``assert_no_residue``, delegating to :mod:`pytest_installperm.placement`."""

    def _wheel_for_verdict(self, wheel: str | os.PathLike[str]) -> Path:
        """The wheel as the verdict should read it (in-process: the fake copy)."""
        return Path(wheel)

    def assert_installed(
        self,
        wheel: str | os.PathLike[str],
        scheme: str | os.PathLike[str] = "user",
        *,
        require: Iterable[str] = (),
    ) -> None:
        """``scheme``: "user", "system", "prefix:DIR", "target:DIR" (or a Path);
        ``require``: optional metadata that must be there (INSTALLER, REQUESTED)."""
        __tracebackhide__ = True
        from pytest_installperm import placement

        placement.assert_installed(
            cast("Result", self), self._wheel_for_verdict(wheel), scheme, require=require
        )

    def assert_not_installed(self, wheel: str | os.PathLike[str]) -> None:
        __tracebackhide__ = True
        from pytest_installperm import placement

        placement.assert_not_installed(cast("Result", self), self._wheel_for_verdict(wheel))

    def assert_untouched(self, role: str) -> None:
        __tracebackhide__ = True
        from pytest_installperm import placement

        placement.assert_untouched(cast("Result", self), role)

    def assert_no_residue(
        self, *, project: str | os.PathLike[str] | None = None, require: Iterable[str] = ()
    ) -> None:
        """``project``: a project directory whose files (lock files, logs) a tool
        may write; ``require``: optional metadata a finished install must have."""
        __tracebackhide__ = True
        from pytest_installperm import placement

        placement.assert_no_residue(cast("Result", self), project=project, require=require)
