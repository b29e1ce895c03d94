"""What a wheel holds, as the verdicts need it: each member with its scheme
key, kind and hashes (:class:`WheelLayout`), and the RECORD hash form."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName

from pytest_installperm.errors import WheelError
from pytest_installperm.schemes import SCHEME_KEYS

HASH_ALGORITHM = "sha256"
#: What a wheel member is, for the verdicts: copied as is, a ``.data/scripts``
#: file whose ``#!python`` shebang the installer rewrites, or a launcher the
#: installer generates from an entry point.
KIND_FILE = "file"
KIND_SCRIPT = "script"
KIND_ENTRY_POINT = "entry-point"


def file_hash(data: bytes) -> str:
    """``sha256=<urlsafe base64, no padding>``, the RECORD form (PEP 376/427)."""
    digest = hashlib.new(HASH_ALGORITHM, data).digest()
    return f"{HASH_ALGORITHM}={base64.urlsafe_b64encode(digest).decode('ascii').rstrip('=')}"


@dataclass(frozen=True)
class Member:
    """One file an installer must write for a wheel, relative to a scheme key.

    ``record_hash`` is what the wheel's RECORD claims; ``content_hash`` what
    the bytes in the archive hash to. They differ only in a corrupt wheel.
    For a ``.data/scripts`` file (``kind == "script"``) with a ``#!python``
    shebang, ``body`` is everything after the first line: the installer
    rewrites the shebang and must keep the rest. Entry-point launchers have no
    content to compare; ``target`` is their ``module:attr``.
    """

    scheme: str
    path: str
    kind: str = KIND_FILE
    record_hash: str | None = None
    content_hash: str | None = None
    body: bytes | None = None
    target: str = ""

    @property
    def corrupt(self) -> bool:
        return self.record_hash is not None and self.record_hash != self.content_hash


@dataclass(frozen=True)
class WheelLayout:
    """A wheel read into what each scheme key must receive.

    ``name`` is the distribution name as the file name spells it, ``project``
    its canonical form, ``metadata_name`` the ``Name:`` of METADATA.
    """

    path: Path
    name: str
    project: NormalizedName
    metadata_name: str
    version: str
    dist_info: str
    root_scheme: str
    members: tuple[Member, ...]

    @property
    def label(self) -> str:
        return f"{self.metadata_name} {self.version} ({self.path.name})"

    @property
    def corrupt(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.corrupt)

    def destinations(self, scheme: Mapping[str, Path]) -> dict[Path, Member]:
        """Absolute path of every member for a scheme mapping.

        Headers land in ``<headers>/<canonical project name>``, where uv puts
        them (pip spells the directory as the requirement was typed; the
        verdicts accept any spelling). The scheme's ``headers`` is the bare
        include directory, as ``env.paths()`` returns it.
        """
        missing = sorted({m.scheme for m in self.members} - set(scheme))
        if missing:
            raise WheelError(
                f"scheme mapping for {self.path.name} lacks key(s) "
                f"{', '.join(missing)}: need {', '.join(SCHEME_KEYS)}"
            )
        found: dict[Path, Member] = {}
        for member in self.members:
            top = Path(scheme[member.scheme])
            if member.scheme == "headers":
                top = top / self.project
            found[Path(os.path.normpath(top / member.path))] = member
        return found


__all__ = [
    "HASH_ALGORITHM",
    "KIND_ENTRY_POINT",
    "KIND_FILE",
    "KIND_SCRIPT",
    "SCHEME_KEYS",
    "Member",
    "WheelLayout",
    "file_hash",
]
