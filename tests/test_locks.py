"""Lock profiles and backend choice: validation and the no-false-pass rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_installperm.backends import bypasses_permissions, choose
from pytest_installperm.errors import BackendError, RoleError
from pytest_installperm.locks import LOCK_ROLES, LockSpec
from pytest_installperm.roles import sandbox_roles


def test_unknown_role_lists_valid_roles() -> None:
    with pytest.raises(ValueError, match="unknown role 'sytem'") as info:
        LockSpec.make(("sytem",))
    assert isinstance(info.value, RoleError)
    for role in LOCK_ROLES:
        assert role in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"home": "gone"}, "home='gone': must be one of missing, present, unwritable"),
        ({"mode": "ro"}, "lock_mode='ro': must be one of deny, readonly-fs"),
    ],
)
def test_bad_values_name_the_rule(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(RoleError, match=message):
        LockSpec.make((), **kwargs)  # type: ignore[arg-type]


def test_unwritable_home_is_a_home_lock() -> None:
    spec = LockSpec.make((), home="unwritable")
    assert spec.locked == {"home"} and spec.needs_denial


def test_no_lock_needs_no_denial() -> None:
    assert not LockSpec.make(()).needs_denial


def test_unknown_backend() -> None:
    with pytest.raises(BackendError, match="unknown backend 'docker'"):
        choose("docker", LockSpec.make(()), uid=65534, gid=65534)


@pytest.mark.skipif(not bypasses_permissions(), reason="this process honours permission bits")
def test_chmod_refuses_when_permissions_are_bypassed() -> None:
    reason = choose("chmod", LockSpec.make(("system",)), uid=1, gid=1).cannot_hold(
        LockSpec.make(("system",))
    )
    assert reason is not None and "CAP_DAC_OVERRIDE" in reason
    if os.geteuid() == 0:
        assert "root" in reason


@pytest.mark.skipif(os.geteuid() != 0, reason="privdrop needs root")
def test_privdrop_refuses_uid_zero() -> None:
    spec = LockSpec.make(("system",))
    assert "uid 0" in (choose("privdrop", spec, uid=0, gid=0).cannot_hold(spec) or "")


def _roles(root: Path, *, venv: bool) -> dict[str, Path]:
    prefix = root / ("venv" if venv else "prefix")
    return sandbox_roles(
        root, prefix=prefix, scripts=prefix / "bin", userbase=root / "home/.local", venv=venv
    )


def test_plan_grants_allowed_trees_and_denies_locked_ones_and_scaffolding() -> None:
    root = Path("/s")
    roles = _roles(root, venv=True)
    plan = LockSpec.make(("system",)).plan(roles, root, exists=lambda p: True)
    assert plan.grant == (root / "cache", root / "tmp", root / "work", root / "home")
    assert plan.deny == (
        (root, False),
        (root / "stage", True),
        (root / "prefix", True),
        (root / "venv", True),
    )
    assert not plan.readonly_fs and plan.readonly_trees() == ()


def test_plan_skips_trees_that_were_not_built() -> None:
    root = Path("/s")
    roles = _roles(root, venv=False)
    spec = LockSpec.make(("user",), home="missing", mode="readonly-fs")
    plan = spec.plan(roles, root, exists=lambda p: p != roles["home"] and p != roles["user"])
    assert roles["home"] not in plan.grant and roles["system"] in plan.grant
    assert all(path != roles["user"] for path, _ in plan.deny)
    assert plan.readonly_fs and plan.readonly_trees() == (root / "stage",)


def test_cannot_hold_is_a_query() -> None:
    for name in ("chmod", "privdrop", "mountns"):
        backend = choose(name, LockSpec.make(()), uid=65534, gid=65534)
        before = dict(vars(backend))
        for spec in (LockSpec.make(()), LockSpec.make(("system",), mode="readonly-fs")):
            backend.cannot_hold(spec)
        assert vars(backend) == before, name
