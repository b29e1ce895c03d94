"""The ``mountns`` backend: locked trees are read-only mounts (EROFS).

Why a backend of its own: a read-only filesystem is a different failure from a
permission denial. Containers run with ``readOnlyRootFilesystem``; ``access()``
and every write then fail with EROFS (errno 30), for root too, and pip's error
carries no "--user" hint. Only a read-only mount gives that.

With ``lock_mode="readonly-fs"`` each locked tree is bound over itself
read-only inside the child's private mount namespace (see :mod:`.contain`),
and nothing else denies the child: as root, the locked trees are handed to the
child's uid like the granted ones, so the only thing in its way is the mount.
With ``lock_mode="deny"`` it denies like ``privdrop`` (root) or ``chmod``
(a normal user), in the same namespace.

As root the child runs as an unprivileged uid (it could remount otherwise);
as a normal user it keeps its uid inside a user namespace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pytest_installperm.backends import BackendBase, bypasses_permissions
from pytest_installperm.backends.chmod import take_write_bits
from pytest_installperm.backends.contain import namespace_mode
from pytest_installperm.backends.privdrop import give
from pytest_installperm.locks import LockSpec, Plan


class MountnsBackend(BackendBase):
    name = "mountns"

    def __init__(self, uid: int, gid: int) -> None:
        super().__init__()
        self.uid = uid
        self.gid = gid
        self.as_root = os.geteuid() == 0
        self.needs_readable_copies = self.as_root

    def cannot_hold(self, spec: LockSpec) -> str | None:
        mode, why = namespace_mode()
        if mode == "none":
            return (
                "backend 'mountns' needs a private mount namespace (as root) or a user "
                f"namespace (as a normal user), and this platform allows neither: {why}"
            )
        if self.as_root and self.uid == 0:
            return "backend 'mountns' was given uid 0 for the child, and root could remount"
        if (
            not self.as_root
            and spec.mode == "deny"
            and spec.needs_denial
            and bypasses_permissions()
        ):
            return (
                f"backend 'mountns' with lock_mode='deny' cannot make the lock "
                f"({spec.describe()}) hold: this process has CAP_DAC_OVERRIDE without "
                "being root; use lock_mode='readonly-fs'"
            )
        return None

    def apply(self, plan: Plan) -> None:
        denied = plan.denied_trees()
        if plan.readonly_fs:
            # The child's namespace binds the denied trees read-only (see
            # launch()); nothing else may stand in its way.
            if self.as_root:
                give([*plan.grant, *denied], (), self.uid, self.gid)
            else:
                take_write_bits([(p, r) for p, r in plan.deny if not r])
        elif self.as_root:
            give(plan.grant, denied, self.uid, self.gid)
        else:
            take_write_bits(plan.deny)

    def popen_kwargs(self) -> Mapping[str, object]:
        if self.as_root:
            return {"user": self.uid, "group": self.gid, "extra_groups": []}
        return {}

    def identity(self) -> tuple[int, int] | None:
        return (self.uid, self.gid) if self.as_root else None

    def owner(self) -> tuple[int, int]:
        return (self.uid, self.gid) if self.as_root else (os.geteuid(), os.getegid())
