"""As root, each sandbox's children get a uid of their own from a pool.

The kernel's own checks then keep concurrent runs apart where the mounts do
not: a unix socket file one child binds in its sandbox is reachable through a
read-only mount, but only with write permission on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm, LockUnavailable
from pytest_installperm.uids import lease

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the pool is for root sessions")


@needs_root
def test_each_sandbox_has_its_own_uid(installperm: InstallPerm) -> None:
    envs = [installperm.system(externally_managed=False, locked=()) for _ in range(3)]
    seen = []
    for env in envs:
        result = env.run([env.python, "-c", "import os; print(os.getuid(), os.getgid())"])
        uid, gid = map(int, result.stdout.split())
        assert (uid, gid) == env.world.owner()
        seen.append(uid)
    assert len(set(seen)) == 3, seen
    assert 0 not in seen


@needs_root
def test_a_uid_is_reused_only_after_its_sandbox_is_gone(installperm: InstallPerm) -> None:
    first = installperm.system(externally_managed=False, locked=())
    uid = first.world.owner()[0]
    second = installperm.system(externally_managed=False, locked=())
    assert second.world.owner()[0] != uid
    first.remove()
    first.world._backend.release()  # idempotent: remove() released it already
    third = installperm.system(externally_managed=False, locked=())
    assert third.world.owner()[0] == uid


def test_lease_is_exclusive_across_processes(tmp_path: Path) -> None:
    code = (
        "import sys; from pytest_installperm.uids import lease; "
        f"l = lease({str(tmp_path)!r}, 3_000_000_000, 2); print(l.uid, flush=True); "
        "sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdin is not None
    held = int(holder.stdout.readline())
    try:
        mine = lease(str(tmp_path), 3_000_000_000, 2)
        assert mine.uid != held
        with pytest.raises(LockUnavailable, match="in use"):
            lease(str(tmp_path), 3_000_000_000, 2)
        mine.release()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    again = lease(str(tmp_path), 3_000_000_000, 2)  # the holder's is free again
    assert again.uid in (held, 3_000_000_000)
    again.release()


def test_uids_of_accounts_are_skipped(tmp_path: Path) -> None:
    with pytest.raises(LockUnavailable):
        lease(str(tmp_path), 0, 1)  # uid 0 is root's


@needs_root
def test_socket_in_another_sandbox_is_refused(installperm: InstallPerm) -> None:
    """The victim binds a unix socket in its own sandbox (mode from umask
    022); the attacker, running at the same time, cannot connect to it."""
    victim = installperm.system(externally_managed=False, locked=())
    attacker = installperm.system(externally_managed=False, locked=())
    sock = victim.sandbox.tmp / "service.sock"
    ready = victim.sandbox.tmp / "ready"
    done = attacker.sandbox.tmp / "done"
    serve = textwrap.dedent(f"""
        import os, socket, time
        s = socket.socket(socket.AF_UNIX)
        s.bind({str(sock)!r})
        s.listen()
        open({str(ready)!r}, "w").close()
        deadline = time.time() + 60
        while not os.path.exists({str(done)!r}) and time.time() < deadline:
            time.sleep(0.02)
        """)
    results = {}
    thread = threading.Thread(
        target=lambda: results.setdefault("v", victim.run([victim.python, "-c", serve]))
    )
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        probe = (
            "import socket, errno\ns = socket.socket(socket.AF_UNIX)\ntry:\n"
            f"    s.connect({str(sock)!r}); print('CONNECTED')\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
            f"open({str(done)!r}, 'w').close()\n"
        )
        attack = attacker.run([attacker.python, "-c", probe])
    finally:
        done.touch()
        thread.join()
    assert ready.exists(), results["v"].describe()
    assert attack.stdout.strip() == "EACCES", attack.describe()
