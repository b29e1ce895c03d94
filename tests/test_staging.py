"""Paths handed to a child: staged when it could not read them, refused with
the path and the uid when they cannot be staged, never followed into what a
child planted.

As root the child runs as another uid, so a wheel built under pytest's 0700
basetemp is unreadable to it; pip would then fail with ``[Errno 13]`` on the
wheel itself, which looks exactly like the denial a test may be checking for.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm
from pytest_installperm.errors import UnreadableArgumentError, UnsafePathError

SECRET = b"root-only secret 0600"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: the child then runs as another uid"
)


def _cat(env_python: Path) -> list[str]:
    return [str(env_python), "-c", "import sys; print(open(sys.argv[1], 'rb').read().decode())"]


@needs_root
@pytest.mark.parametrize("spelling", ["str", "path", "option"])
def test_unreadable_wheel_is_staged(
    installperm: InstallPerm, demo_wheel: Path, spelling: str, tmp_path: Path
) -> None:
    """A wheel under pytest's 0700 basetemp, passed as str, Path or --opt=PATH."""
    env = installperm.system(externally_managed=False, locked=())
    private = tmp_path / "dist"
    private.mkdir(mode=0o700)
    wheel = private / demo_wheel.name
    shutil.copy(demo_wheel, wheel)
    arg: object = {"str": str(wheel), "path": wheel}.get(spelling, f"--find-links={private}")
    if spelling == "option":  # a directory: cannot be staged, so refused
        with pytest.raises(UnreadableArgumentError) as caught:
            env.pip("install", "--no-index", arg, "demo")
        message = str(caught.value)
        assert str(private) in message and f"uid {env.world.owner()[0]}" in message
        return
    result = env.pip("install", "--no-index", "--no-deps", arg)  # type: ignore[arg-type]
    assert result.returncode == 0, result.describe()
    staged = [a for a in result.argv if a.endswith(demo_wheel.name)]
    assert staged and staged[0].startswith(str(env.sandbox.stage)), result.argv
    result.assert_installed(demo_wheel, scheme="system")


def test_readable_str_wheel_is_passed_as_is(installperm: InstallPerm, demo_wheel: Path) -> None:
    """make_wheel builds into the session root, which every uid can read."""
    env = installperm.system(externally_managed=False, locked=())
    result = env.pip("install", "--no-index", "--no-deps", str(demo_wheel))
    assert result.returncode == 0, result.describe()
    assert str(demo_wheel) in result.argv


@needs_root
def test_readable_str_path_is_passed_as_is(installperm: InstallPerm, tmp_path: Path) -> None:
    env = installperm.system(externally_managed=False, locked=())
    stdlib_file = Path(sysconfig.get_paths()["stdlib"]) / "os.py"
    readable = os.stat(stdlib_file).st_mode & 0o004 and all(
        os.stat(p).st_mode & 0o001 for p in stdlib_file.parents
    )
    result = env.run([*_cat(env.python)[:2], "pass", str(stdlib_file)])
    if readable or env.mode.name == "in-place":  # in place the child reaches it as it is
        assert result.argv[-1] == str(stdlib_file)
    else:  # a pyenv under 0700 /root: staged, like any unreadable file
        assert result.argv[-1].startswith(str(env.sandbox.stage))


@needs_root
def test_unreadable_directory_is_refused_before_running(
    installperm: InstallPerm, tmp_path: Path
) -> None:
    env = installperm.system(externally_managed=False, locked=())
    private = tmp_path / "private-tree"
    private.mkdir(mode=0o700)
    marker = env.sandbox.work / "ran"
    with pytest.raises(UnreadableArgumentError) as caught:
        env.run([env.python, "-c", f"open({str(marker)!r}, 'w')", str(private)])
    assert str(private) in str(caught.value) and "uid" in str(caught.value)
    assert isinstance(caught.value, PermissionError)
    assert not marker.exists()


def test_planted_symlink_in_the_sandbox_is_not_followed(
    installperm: InstallPerm, tmp_path: Path
) -> None:
    """The child of an earlier run left a symlink to a root-only file where a
    wheel was expected; passing that path stages nothing and reads nothing."""
    env = installperm.system(externally_managed=False, locked=())
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    planted = env.sandbox.work / "dist" / "demo-1.0-py3-none-any.whl"
    result = env.run(
        [
            env.python,
            "-c",
            f"import os; os.makedirs({str(planted.parent)!r}); "
            f"os.symlink({str(secret)!r}, {str(planted)!r})",
        ]
    )
    assert result.returncode == 0, result.describe()
    for arg in (planted, str(planted)):
        shown = env.run([*_cat(env.python), arg])  # type: ignore[list-item]
        assert shown.argv[-1] == str(planted), shown.argv  # passed as is: the child's own
        assert SECRET.decode() not in shown.output
    assert os.listdir(env.sandbox.stage) == []


def test_symlink_in_another_sandbox_is_not_followed(
    installperm: InstallPerm, tmp_path: Path
) -> None:
    """A path into a sibling sandbox (its child's to write) is opened without
    following links: a planted one is an error naming it, not a copy."""
    env = installperm.system(externally_managed=False, locked=())
    other = installperm.system(externally_managed=False, locked=())
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    planted = other.sandbox.work / "x.whl"
    os.symlink(secret, planted)
    with pytest.raises(UnsafePathError) as caught:
        env.run([*_cat(env.python), planted])
    assert "symlink" in str(caught.value) and str(planted) in str(caught.value)
    assert SECRET.decode() not in str(caught.value)


@pytest.mark.parametrize("make", ["fifo", "directory"])
def test_non_file_path_argument(
    installperm: InstallPerm, tmp_path: Path, make: str, make_wheel: Callable[..., Path]
) -> None:
    """A fifo is passed as it is (never opened to block on); a readable
    directory too."""
    env = installperm.system(externally_managed=False, locked=())
    where = env.root.parent / f"arg-{make}-{os.getpid()}"
    if make == "fifo":
        os.mkfifo(where)
    else:
        where.mkdir()
    os.chmod(where, 0o755 if make == "directory" else 0o644)
    try:
        result = env.run([env.python, "-c", "pass", str(where)])
        assert result.argv[-1] == str(where)
    finally:
        where.rmdir() if make == "directory" else where.unlink()
