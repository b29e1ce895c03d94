"""The ``mountns`` backend: ``lock_mode="readonly-fs"`` gives a real EROFS.

A read-only filesystem (a container's ``readOnlyRootFilesystem``) is not a
permission denial: ``access()`` says "not writable" for root too, every write
fails with errno 30, and pip's error carries no ``--user`` hint. These tests
run real pip against real read-only mounts, as root and, through the
``unprivileged`` fixture, as a normal user in a user namespace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm
from pytest_installperm.backends import choose
from pytest_installperm.backends.contain import namespace_mode
from pytest_installperm.locks import LockSpec

#: Prints {role: errno or "ok"} for a write attempt in each directory given.
PROBE = """
import errno, json, os, sys
found = {}
for role, directory in json.loads(sys.argv[1]).items():
    try:
        os.makedirs(os.path.join(directory, "probe-dir"))
        found[role] = "ok"
    except OSError as exc:
        found[role] = errno.errorcode[exc.errno]
    found[role + ":access"] = os.access(directory, os.W_OK)
print(json.dumps(found))
"""

needs_namespace = pytest.mark.skipif(
    namespace_mode()[0] == "none",
    reason=f"no mount or user namespace here: {namespace_mode()[1]}",
)


@pytest.fixture
def wheel(make_wheel: Callable[..., Path]) -> Path:
    return make_wheel("rofs_demo", "1.0", purelib={"rofs_demo/__init__.py": "X = 1\n"})


def test_auto_picks_mountns_for_readonly_fs() -> None:
    readonly = LockSpec.make(("system",), mode="readonly-fs")
    assert choose("auto", readonly, uid=65534, gid=65534).name == "mountns"
    assert choose("auto", LockSpec.make(("system",)), uid=65534, gid=65534).name in (
        "chmod",
        "privdrop",
    )
    for other in ("chmod", "privdrop"):
        reason = choose(other, readonly, uid=65534, gid=65534).cannot_hold(readonly)
        assert reason is not None and "mountns" in reason and "EROFS" in reason


@needs_namespace
def test_readonly_fs_locks_fail_with_erofs(installperm: InstallPerm) -> None:
    env = installperm.system(
        externally_managed=False, locked=("system", "user"), lock_mode="readonly-fs"
    )
    assert env.backend == "mountns"
    dirs = {
        "purelib": env.paths("system")["purelib"],
        "scripts": env.paths("system")["scripts"],
        "userbase": env.userbase,
        "home": env.home,
    }
    result = env.run([env.python, "-c", PROBE, json.dumps({k: str(v) for k, v in dirs.items()})])
    found = json.loads(result.stdout)
    assert found == {
        "purelib": "EROFS",
        "purelib:access": False,
        "scripts": "EROFS",
        "scripts:access": False,
        "userbase": "EROFS",
        "userbase:access": False,
        "home": "ok",
        "home:access": True,
    }, result.describe()
    assert not result.outside, result.describe()


@needs_namespace
def test_mountns_deny_mode_is_eacces(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=("system",), backend="mountns")
    purelib = env.paths("system")["purelib"]
    result = env.run([env.python, "-c", PROBE, json.dumps({"purelib": str(purelib)})])
    assert json.loads(result.stdout) == {"purelib": "EACCES", "purelib:access": False}, (
        result.describe()
    )


@needs_namespace
def test_readonly_fs_pip_falls_back_to_user(installperm: InstallPerm, wheel: Path) -> None:
    env = installperm.system(externally_managed=False, locked=("system",), lock_mode="readonly-fs")
    result = env.pip("install", "--no-index", "--no-deps", wheel)
    assert result.returncode == 0, result.describe()
    assert "Defaulting to user installation because normal site-packages is not writeable" in (
        result.output
    )
    user_site = env.paths("user")["purelib"]
    assert user_site / "rofs_demo" / "__init__.py" in result.changes.created
    assert not result.changes.under("system"), result.changes
    assert not result.outside, result.describe()


@needs_namespace
def test_readonly_fs_user_base_too_has_no_user_hint(installperm: InstallPerm, wheel: Path) -> None:
    env = installperm.system(
        externally_managed=False, locked=("system", "user"), lock_mode="readonly-fs"
    )
    result = env.pip("install", "--no-index", "--no-deps", wheel)
    assert result.returncode != 0, result.describe()
    assert "Defaulting to user installation" in result.output
    assert "[Errno 30] Read-only file system" in result.output, result.describe()
    assert "--user" not in result.output, result.describe()
    assert "Check the permissions" not in result.output, result.describe()
    assert not result.changes.under("user") and not result.changes.under("system")


def test_deny_mode_user_base_locked_says_check_permissions(
    installperm: InstallPerm, wheel: Path
) -> None:
    """The contrast: the same scenario with EACCES asks to check permissions."""
    env = installperm.system(externally_managed=False, locked=("system", "user"))
    result = env.pip("install", "--no-index", "--no-deps", wheel)
    assert result.returncode != 0, result.describe()
    assert "[Errno 13] Permission denied" in result.output, result.describe()
    assert "Check the permissions." in result.output, result.describe()


@pytest.mark.parametrize("lock_mode", ["deny", "readonly-fs"])
def test_no_fallback_hint_depends_on_errno(
    installperm: InstallPerm, wheel: Path, lock_mode: str
) -> None:
    """User site off, so no fallback: EACCES suggests ``--user``, EROFS does not."""
    if lock_mode == "readonly-fs" and namespace_mode()[0] == "none":
        pytest.skip(f"no mount or user namespace here: {namespace_mode()[1]}")
    env = installperm.system(
        externally_managed=False, locked=("system",), user_site=False, lock_mode=lock_mode
    )
    result = env.pip("install", "--no-index", "--no-deps", wheel)
    assert result.returncode != 0, result.describe()
    assert "Defaulting to user installation" not in result.output
    if lock_mode == "deny":
        assert "[Errno 13] Permission denied" in result.output, result.describe()
        assert "Consider using the `--user` option or check the permissions." in result.output
    else:
        assert "[Errno 30] Read-only file system" in result.output, result.describe()
        assert "--user" not in result.output and "permissions" not in result.output, (
            result.describe()
        )


INNER = """
import errno, json, os

def test_readonly_fs_as_a_normal_user(installperm):
    assert os.geteuid() != 0
    env = installperm.system(externally_managed=False, locked=("system",), lock_mode="readonly-fs")
    assert env.backend == "mountns"
    purelib = env.paths("system")["purelib"]
    code = ("import errno, os\\n"
            "try:\\n    os.mkdir(%r)\\n"
            "except OSError as e:\\n    print(errno.errorcode[e.errno])\\n"
            "print(os.geteuid())" % str(purelib / "x"))
    result = env.run([env.python, "-c", code])
    assert result.stdout.split() == ["EROFS", str(os.geteuid())], result.describe()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="runs an inner session as a normal user from root")
def test_readonly_fs_as_a_normal_user(unprivileged: object) -> None:
    """Inner pytest as an unprivileged uid: a user namespace gives the EROFS,
    and the child keeps the user's own uid (it is not mapped to root)."""
    run = unprivileged.runpytest(INNER)  # type: ignore[attr-defined]
    if "no mount or user namespace" in run.stdout:
        pytest.skip("user namespaces are not available to a normal user here")
    run.assert_outcomes(passed=1)
