"""The ``privdrop`` backend: root runs the child as an unprivileged uid.

Everything in a sandbox is created by root. Granted trees are handed to the
child's uid; denied trees simply stay root's, which is the real situation the
project exists for (a root-owned ``/usr/local`` and a non-root user).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pytest_installperm.backends import BackendBase, _walk
from pytest_installperm.locks import LockSpec, Plan


class PrivdropBackend(BackendBase):
    name = "privdrop"
    needs_readable_copies = True

    def __init__(self, uid: int, gid: int) -> None:
        super().__init__()
        self.uid = uid
        self.gid = gid

    def cannot_hold(self, spec: LockSpec) -> str | None:
        if spec.mode == "readonly-fs":
            return (
                "backend 'privdrop' gives EACCES, not EROFS: lock_mode='readonly-fs' needs "
                "the 'mountns' backend"
            )
        if os.geteuid() != 0:
            return (
                f"backend 'privdrop' needs root to run the child as uid {self.uid}; this "
                f"process runs as uid {os.geteuid()}: use the 'chmod' backend"
            )
        if self.uid == 0:
            return "backend 'privdrop' was given uid 0 for the child, and root ignores locks"
        return None

    def apply(self, plan: Plan) -> None:
        give(
            plan.grant,
            plan.denied_trees(),
            self.uid,
            self.gid,
            keep=[p for p, recursive in plan.deny if not recursive],
        )

    def popen_kwargs(self) -> Mapping[str, object]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def identity(self) -> tuple[int, int] | None:
        return self.uid, self.gid

    def owner(self) -> tuple[int, int]:
        return self.uid, self.gid


def give(
    trees: Iterable[Path], skip: Iterable[Path], uid: int, gid: int, keep: Iterable[Path] = ()
) -> None:
    """Chown ``trees`` (minus the ``skip`` trees, and the ``keep`` directories
    themselves, not what they hold) to the child's uid."""
    denied = frozenset(skip)
    kept = {str(p) for p in keep}
    for top in trees:
        for path, is_dir, nlink in _walk(top, denied):
            # Hard-linked files belong to a template: never chown those.
            if (is_dir or nlink <= 1) and path not in kept:
                os.lchown(path, uid, gid)
