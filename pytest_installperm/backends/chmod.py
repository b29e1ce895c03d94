"""The ``chmod`` backend: a normal user, denied by mode bits.

Root and any process with CAP_DAC_OVERRIDE walk through mode bits, so this
backend refuses (and the test skips) whenever this process bypasses them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from pytest_installperm.backends import BackendBase, _walk, bypasses_permissions
from pytest_installperm.locks import LockSpec, Plan

_NO_WRITE = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


class ChmodBackend(BackendBase):
    name = "chmod"

    def cannot_hold(self, spec: LockSpec) -> str | None:
        if spec.mode == "readonly-fs":
            return (
                "backend 'chmod' gives EACCES, not EROFS: lock_mode='readonly-fs' needs "
                "the 'mountns' backend"
            )
        if spec.needs_denial and bypasses_permissions():
            who = "root (uid 0)" if os.geteuid() == 0 else f"uid {os.geteuid()}"
            return (
                f"backend 'chmod' cannot make the lock ({spec.describe()}) hold: this "
                f"process runs as {who} with CAP_DAC_OVERRIDE, which ignores permission "
                "bits; use the 'privdrop' backend as root, or run as a normal user"
            )
        return None

    def apply(self, plan: Plan) -> None:
        take_write_bits(plan.deny)


def take_write_bits(deny: Iterable[tuple[Path, bool]]) -> None:
    """Remove every write bit from the denied directories (and trees)."""
    for top, recursive in deny:
        if not recursive:
            os.chmod(top, stat.S_IMODE(os.lstat(top).st_mode) & _NO_WRITE)
            continue
        # Deepest first, so a directory is still writable while we fix its children.
        for path, is_dir, nlink in reversed(_walk(top, frozenset())):
            # Hard links share their inode with a template or the real
            # interpreter: never change those modes.
            if is_dir or nlink == 1:
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                os.chmod(path, mode & _NO_WRITE)
