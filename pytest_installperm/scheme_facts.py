"""What a scheme probe learned about an interpreter, kept once per base
interpreter (and in the persistent cache) and mapped onto each sandbox."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from pytest_installperm.schemes import Schemes, relative_layout

if TYPE_CHECKING:
    from pytest_installperm.sandbox import Sandbox


@dataclass(frozen=True)
class SchemeFacts:
    """What a relocated interpreter reports, with sandbox paths as placeholders."""

    system: dict[str, str]
    user: dict[str, str]
    userbase: str
    enable_user_site: bool
    #: ``--prefix DIR``'s scheme, relative to DIR (see :mod:`.schemes`).
    prefix_layout: dict[str, str]
    probe_prefix: str
    probe_venv: str
    probe_home: str
    #: Debian's ``posix_local``, relative to its base: ``--prefix DIR``'s scheme
    #: for pip before 26.3 (empty: the interpreter does not prefer it).
    prefix_local_layout: dict[str, str] = dataclasses.field(default_factory=dict)

    def schemes(
        self,
        system: Mapping[str, Path],
        user: Mapping[str, Path],
        *,
        seen: Mapping[str, Path] | None = None,
    ) -> Schemes:
        """An environment's scheme facts, with its system and user scheme
        (``seen``: the system scheme as the installer sees it, in place)."""
        return Schemes(
            system,
            user,
            {k: PurePath(v) for k, v in self.prefix_layout.items()},
            {k: PurePath(v) for k, v in self.prefix_local_layout.items()},
            dict(seen or {}),
        )

    def relocate(self, value: str, *, prefix: Path, venv: Path, home: Path) -> Path:
        """Map a probe path onto the same place in another sandbox."""
        for old, new in (
            (self.probe_venv, venv),
            (self.probe_prefix, prefix),
            (self.probe_home, home),
        ):
            if value == old:
                return new
            if value.startswith(old + os.sep):
                return new / value[len(old) + 1 :]
        return Path(value)


def scheme_facts_of(data: dict[str, Any], sandbox: Sandbox) -> SchemeFacts:
    """A scheme probe's answer, with the probe sandbox's paths as placeholders."""
    return SchemeFacts(
        system=dict(data["system"]),
        user=dict(data["user"]),
        userbase=str(data["userbase"]),
        enable_user_site=bool(data["enable_user_site"]),
        prefix_layout={
            k: str(v) for k, v in relative_layout(data["prefix"], str(data["prefix_base"])).items()
        },
        probe_prefix=str(sandbox.prefix),
        probe_venv=str(sandbox.venv),
        probe_home=str(sandbox.home),
        prefix_local_layout={
            k: str(v)
            for k, v in relative_layout(data["prefix_local"], str(data["prefix_base"])).items()
        }
        if data.get("prefix_local")
        else {},
    )


__all__ = ["SchemeFacts", "scheme_facts_of"]
