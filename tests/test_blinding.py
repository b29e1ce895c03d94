"""Change detection the child cannot switch off, and host files the session
never changes.

The child controls a file's link count (it may hard-link any file it can
read), so no check may depend on it; which inodes a sandbox shares with its
template is learnt before the first run.
"""

from __future__ import annotations

import os
import shutil
import stat
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm, PlacementError
from pytest_installperm.changes import Snapshot
from pytest_installperm.programs import readable_program


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """Same size, same mtime: only ctime can tell."""
    st = os.stat(path)
    assert len(data) == st.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("links", [1, 3])
@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "deep-diff"])
def test_hard_link_does_not_blind_the_snapshot(tmp_path: Path, links: int, watch: bool) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "mod.py").write_bytes(b"A = 1\n")
    snap = Snapshot.take(tree, watch=watch)
    for i in range(links):
        os.link(tree / "sub" / "mod.py", tree / f"alias{i}")
    snap.update()
    _rewrite_in_place(tree / "sub" / "mod.py", b"A = 2\n")
    if watch:
        assert tree / "sub" / "mod.py" in snap.update().modified
    else:  # directory times did not move; the per-file pass must still see it
        assert tree / "sub" / "mod.py" in snap.deep_diff(tree / "sub")
    snap.close()


def test_template_links_are_still_ignored(tmp_path: Path) -> None:
    """A file already hard-linked when the snapshot is taken is the template's:
    another sandbox linking it moves its ctime, which is not a change here."""
    template = tmp_path / "template"
    tree = tmp_path / "tree"
    template.mkdir()
    tree.mkdir()
    (template / "python").write_bytes(b"binary")
    os.link(template / "python", tree / "python")
    snap = Snapshot.take(tree, watch=False)
    os.link(template / "python", tmp_path / "next-sandbox-python")
    assert not snap.update()


def test_hard_linked_rewrite_fails_assert_untouched(
    installperm: InstallPerm, make_wheel: Callable[..., Path]
) -> None:
    """End to end: the child links a system-site file into tmp, rewrites the
    original in place (same size, mtime restored), and the verdict sees it."""
    wheel = make_wheel("victim", purelib={"victim/__init__.py": "A = 1\n"})
    env = installperm.system(externally_managed=False, locked=(), preinstalled=[wheel])
    target = env.paths("system")["purelib"] / "victim" / "__init__.py"
    script = env.sandbox.work / "blind.py"
    script.write_text(
        textwrap.dedent(f"""
        import os
        target = {str(target)!r}
        os.link(target, {str(env.sandbox.tmp / "alias")!r})
        st = os.stat(target)
        with open(target, "r+b") as f:
            f.write(b"A = 2\\n")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        """)
    )
    env.snapshot().update()
    result = env.run([env.python, script])
    assert result.returncode == 0, result.describe()
    assert target in result.changes.modified, result.changes
    with pytest.raises(PlacementError):
        result.assert_untouched("system")


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755])
def test_tools_never_change_a_host_program(tmp_path: Path, mode: int) -> None:
    """The session's readable copy of a program (uv) is a hard link only when
    the program is already readable and executable by all; it never chmods."""
    host = tmp_path / "venv-bin-uv"
    host.write_bytes(b"#!/bin/sh\necho uv\n")
    host.chmod(mode)
    before = os.stat(host)
    tools = tmp_path / "tools"
    tools.mkdir()
    readable_program(host, tools / "uv")
    after = os.stat(host)
    assert stat.S_IMODE(after.st_mode) == mode
    assert after.st_ctime_ns == before.st_ctime_ns or after.st_nlink == 2
    copy = os.stat(tools / "uv")
    assert copy.st_mode & 0o755 == 0o755
    assert (copy.st_ino == after.st_ino) == (mode == 0o755)


def test_session_tools_leave_the_real_uv_alone(installperm: InstallPerm) -> None:
    scripts = sysconfig.get_path("scripts")
    uv = shutil.which("uv", path=os.pathsep.join([scripts, os.environ.get("PATH", "")]))
    if uv is None:
        pytest.skip("uv is not installed here")
    mode = stat.S_IMODE(os.stat(uv).st_mode)
    env = installperm.system(externally_managed=False, locked=())
    assert env.tool("uv").exists()
    assert stat.S_IMODE(os.stat(uv).st_mode) == mode
