"""``assert_untouched``: nothing under a role changed, in place or not."""

from __future__ import annotations

from pytest_installperm.errors import RoleError
from pytest_installperm.placement.protocol import Result
from pytest_installperm.placement.table import (
    Row,
    raise_failure,
    require_started,
    shown_path,
    table,
)


def assert_untouched(result: Result, role: str) -> None:
    """Nothing under ``role`` was created, modified or deleted, in place or not."""
    __tracebackhide__ = True
    require_started("assert_untouched", result)
    env = result.environment
    if role not in env.roles:
        raise RoleError(
            f"unknown role {role!r}: this environment has roles {', '.join(sorted(env.roles))}"
        )
    changes = result.changes.under(role)
    rows = [Row(p, "created") for p in changes.created]
    rows += [Row(p, "modified") for p in changes.modified]
    rows += [Row(p, "deleted") for p in changes.deleted]
    seen = {r.path for r in rows}
    snapshot = env.snapshot()
    rows += [
        Row(p, "rewritten in place") for p in snapshot.deep_diff(env.roles[role]) if p not in seen
    ]
    if rows:
        raise_failure(
            f"role {role!r} ({shown_path(env.roles[role], env.root)}) was touched: "
            f"{len(set(rows))} paths",
            result,
            table(rows, env.root, "path"),
        )


__all__ = [
    "assert_untouched",
]
