"""Session bookkeeping: a live session's root is never swept, a dead one's is.

Liveness is a lock (``flock`` on the owner file) held for the session's
lifetime, so it holds across PID namespaces, where a pid and its start time
name another process or none at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_installperm.sandbox import OWNER_FILE, SessionRoot, sweep_stale

HOLD = (
    "import sys; from pytest_installperm.sandbox import SessionRoot; "
    "r = SessionRoot(sys.argv[1]); print(r.path, flush=True); sys.stdin.read()"
)


def _holder(parent: Path, *prefix: str) -> tuple[subprocess.Popen[str], Path]:
    """A process that makes a session root in ``parent`` and keeps it until
    its stdin closes; started behind ``prefix`` (e.g. ``unshare ...``)."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", HOLD, str(parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, "the holder made no session root"
    return proc, Path(line)


def _end(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def test_live_session_in_another_pid_namespace_is_kept(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to start a session in another PID namespace")
    proc, root = _holder(tmp_path, unshare, "--pid", "--fork", "--mount-proc")
    try:
        # In its namespace the holder is pid 2 or so; here that pid is
        # another process with another start time: a pid check says "dead".
        assert sweep_stale(str(tmp_path)) == []
        SessionRoot(str(tmp_path)).remove()  # a new session sweeps too
        assert root.exists()
    finally:
        _end(proc)
    assert sweep_stale(str(tmp_path)) == [root]
    assert not root.exists()


def test_live_session_in_this_namespace_is_kept(tmp_path: Path) -> None:
    proc, root = _holder(tmp_path)
    try:
        assert sweep_stale(str(tmp_path)) == []
    finally:
        _end(proc)
    assert sweep_stale(str(tmp_path)) == [root]


def test_killed_session_is_swept(tmp_path: Path) -> None:
    proc, root = _holder(tmp_path)
    proc.kill()
    proc.wait()
    assert sweep_stale(str(tmp_path)) == [root]


def test_this_process_sees_its_own_root_as_live(tmp_path: Path) -> None:
    mine = SessionRoot(str(tmp_path))
    try:
        assert sweep_stale(str(tmp_path)) == []
        assert mine.path.exists()
    finally:
        mine.remove()


@pytest.mark.parametrize("owner", ["missing", "symlink", "directory", "fifo", "other-format"])
def test_roots_without_a_plain_owner_file_are_left_alone(tmp_path: Path, owner: str) -> None:
    """A root still being created, or one whose owner file is not a file: not
    ours to judge, and never followed."""
    root = tmp_path / f"installperm-{owner}"
    root.mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("not a lock")
    if owner == "symlink":
        os.symlink(target, root / OWNER_FILE)
    elif owner == "directory":
        (root / OWNER_FILE).mkdir()
    elif owner == "fifo":
        os.mkfifo(root / OWNER_FILE)
    elif owner == "other-format":  # an older version's pid token, its process long gone
        (root / OWNER_FILE).write_text("999999 12345\n")
    assert sweep_stale(str(tmp_path)) == []
    assert root.exists() and target.read_text() == "not a lock"
