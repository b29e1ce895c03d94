"""Test wheels: build them (``make_wheel``) and read them back into the files
that each scheme key should receive.

Why build wheels here instead of shipping fixtures: a permission test needs a
wheel whose every file is known (package, platlib extension stand-in, console
and GUI entry points, ``.data/scripts``, data and headers), built in
milliseconds with nothing downloaded, so that a verdict can account for each
file. Names, versions and tags go through ``packaging``; reading goes through
``installer``, the reference implementation of wheel installation, so that
"where should this file go" is answered by the same code an installer uses and
not by a second, hand-written opinion.

Reading is strict about structure (a missing or unparsable WHEEL or RECORD, a
file the RECORD does not list) and raises :class:`WheelError`. It is lenient
about a wrong hash in RECORD: the claim and the real hash are both kept, so a
verdict can say "file X: RECORD says A, the bytes say B" and a test can check
that an installer refuses such a wheel.
"""

from __future__ import annotations

from pytest_installperm.wheels.build import Content, Files, MakeWheel, build_wheel, platform_tag
from pytest_installperm.wheels.layout import (
    HASH_ALGORITHM,
    KIND_ENTRY_POINT,
    KIND_FILE,
    KIND_SCRIPT,
    SCHEME_KEYS,
    Member,
    WheelLayout,
    file_hash,
)
from pytest_installperm.wheels.preinstall import install_wheel
from pytest_installperm.wheels.read import read_wheel

__all__ = [
    "HASH_ALGORITHM",
    "KIND_ENTRY_POINT",
    "KIND_FILE",
    "KIND_SCRIPT",
    "SCHEME_KEYS",
    "Content",
    "Files",
    "MakeWheel",
    "Member",
    "WheelLayout",
    "build_wheel",
    "file_hash",
    "install_wheel",
    "platform_tag",
    "read_wheel",
]
