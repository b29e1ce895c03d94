"""A contained child cannot outlive its run, see other runs, reach the host's
network or IPC, or exhaust the machine.

Each test attacks from inside a real child and checks the effect from the
host side (its /proc, its sockets, its SysV IPC table), not through the
plugin's own bookkeeping. These run as root in CI.
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest
from processes import canary_name, host_processes_named, set_name_code

from pytest_installperm import Environment, InstallPerm, Limits
from pytest_installperm.backends.contain.limits import DEFAULT_LIMITS, MiB


def _script(env: Environment, body: str, name: str = "hostile.py") -> Path:
    path = env.sandbox.work / name
    path.write_text(textwrap.dedent(body))
    os.chmod(path, 0o644)
    env.snapshot().update()  # our write, not the child's
    return path


# -- class 2: nothing outlives its run ------------------------------------------


DAEMONS = {
    # how the leftover process detaches itself
    "double-fork-setsid": "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n{body}",
    "new-user-and-mount-namespace": (
        "import ctypes\n"
        "if os.fork() == 0:\n"
        "    assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000 | 0x00020000) == 0\n"
        "    if os.fork() == 0:\n{body}"
    ),
    "nested-pid-namespace": (
        "import ctypes\n"
        "if os.fork() == 0:\n"
        "    assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000 | 0x20000000) == 0\n"
        "    if os.fork() == 0:\n{body}"
    ),
    "many-forks-first": (
        "for _ in range(200):\n"
        "    if os.fork() == 0:\n"
        "        os._exit(0)\n"
        "    os.wait()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n{body}"
    ),
}


@pytest.mark.parametrize("how", sorted(DAEMONS))
def test_no_process_outlives_a_finished_run(installperm: InstallPerm, how: str) -> None:
    """The installer exits at once and leaves a daemon that keeps writing."""
    env = installperm.system(externally_managed=False, locked=("system",))
    name = canary_name()
    trail = env.sandbox.tmp / "trail"
    body = textwrap.indent(
        f"{set_name_code(name)}\n"
        f"open({str(env.sandbox.tmp / 'started')!r}, 'w').close()\n"
        "while True:\n"
        f"    open({str(trail)!r}, 'a').write('.')\n"
        "    time.sleep(0.02)\n",
        "        ",
    )
    started = env.sandbox.tmp / "started"
    code = (
        "import os, time\n"
        + DAEMONS[how].format(body=body)
        + textwrap.dedent(f"""
        else:
            import os.path
            while not os.path.exists({str(started)!r}):
                time.sleep(0.01)
        """)
    )
    script = _script(env, code)
    result = env.run([env.python, script], timeout=30)
    assert not result.timed_out, result.describe()
    assert started.exists(), result.describe()  # the daemon did start
    assert host_processes_named(name) == [], f"{how}: the daemon outlived its run"
    size = trail.stat().st_size if trail.exists() else 0
    time.sleep(0.2)
    assert (trail.stat().st_size if trail.exists() else 0) == size, "still writing"
    installperm.close()
    assert not env.root.exists()


def test_the_child_sees_only_its_own_processes(installperm: InstallPerm) -> None:
    """A private /proc: pid 1 is the run's init, and nothing of the host shows."""
    env = installperm.system(externally_managed=False, locked=())
    script = _script(
        env,
        """
        import os
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        print(os.getpid(), pids)
        print(open("/proc/1/cmdline", "rb").read() != b"")
        """,
    )
    result = env.run([env.python, script])
    assert result.returncode == 0, result.describe()
    mine, pids = result.stdout.splitlines()[0].split(" ", 1)
    assert mine == "1", result.stdout  # the installer is its namespace's init
    assert pids == "[1]", result.stdout
    assert str(os.getpid()) not in pids.split(", ")


# -- class 3: children of different tests cannot touch each other ----------------


ATTACK = """
import os, signal, sys
victim_root, victim_file = sys.argv[1], sys.argv[2]
seen = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("SEEN", seen)
for pid in seen:
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
            print("KILLED", pid)
        except OSError as exc:
            print("NOKILL", pid, exc.errno)
for target in (victim_file, os.path.join(victim_root, "work", "planted")):
    try:
        with open(target, "a") as f:
            f.write("attacker was here")
        print("WROTE", target)
    except OSError as exc:
        print("DENIED", exc.errno, target)
for pid in range(2, 400):  # another process's root, by any pid it could have
    try:
        os.listdir(f"/proc/{pid}/root{victim_root}")
        print("REACHED", pid)
    except OSError:
        pass
"""

VICTIM = """
import time, sys
victim_file = sys.argv[1]
open(victim_file, "w").write("intact")
open(victim_file + ".ready", "w").close()
deadline = time.time() + 240
import os
while not os.path.exists(sys.argv[2]) and time.time() < deadline:
    time.sleep(0.02)
print(open(victim_file).read())
"""


def test_concurrent_runs_cannot_signal_or_write_each_other(installperm: InstallPerm) -> None:
    """Two environments of one test, their children running at the same time."""
    victim = installperm.system(externally_managed=False, locked=())
    attacker = installperm.system(externally_managed=False, locked=())
    victim_file = victim.sandbox.work / "precious"
    done = attacker.sandbox.tmp / "done"
    results = {}
    vscript = _script(victim, VICTIM)
    thread = threading.Thread(
        target=lambda: results.setdefault(
            "victim", victim.run([victim.python, vscript, str(victim_file), str(done)], timeout=60)
        )
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{victim_file}.ready").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        ascript = _script(attacker, ATTACK + f"\nopen({str(done)!r}, 'w').close()\n")
        attack = attacker.run(
            [attacker.python, ascript, str(victim.root), str(victim_file)], timeout=60
        )
    finally:
        done.touch()  # never leave the victim waiting
        thread.join()
    assert attack.returncode == 0, attack.describe()
    assert "KILLED" not in attack.stdout and "WROTE" not in attack.stdout, attack.stdout
    assert "REACHED" not in attack.stdout, attack.stdout
    assert attack.stdout.count("DENIED") == 2, attack.stdout
    assert "SEEN [1]" in attack.stdout, attack.stdout
    assert results["victim"].returncode == 0, results["victim"].describe()
    assert results["victim"].stdout.strip() == "intact"
    assert victim_file.read_text() == "intact"


def test_concurrent_runs_under_xdist(pytester: pytest.Pytester) -> None:
    """The same attack across two xdist workers: each with its own session."""
    rendezvous = pytester.path / "rendezvous"
    rendezvous.mkdir()
    pytester.makepyfile(
        test_pair=f"""
        import os, time
        from pathlib import Path
        RV = Path({str(rendezvous)!r})
        VICTIM = {VICTIM!r}
        ATTACK = {ATTACK!r}

        def _script(env, body):
            path = env.sandbox.work / "s.py"
            path.write_text(body)
            os.chmod(path, 0o644)
            env.snapshot().update()
            return path

        def _wait(path, seconds=240):
            deadline = time.monotonic() + seconds
            while not path.exists():
                assert time.monotonic() < deadline, path
                time.sleep(0.02)

        def test_victim(installperm):
            env = installperm.system(externally_managed=False, locked=())
            target = env.sandbox.work / "precious"
            (RV / "victim.tmp").write_text(f"{{env.root}}\\n{{target}}")
            (RV / "victim.tmp").rename(RV / "victim")  # whole, or not at all
            # the attacker's test flags the end of its attack inside our sandbox,
            # where our child can see it
            result = env.run([env.python, _script(env, VICTIM), str(target),
                              str(env.sandbox.tmp / "attacked")], timeout=300)
            assert result.returncode == 0, result.describe()
            assert result.stdout.strip() == "intact"
            (RV / "victim-pid").write_text(str(os.getpid()))

        def test_attacker(installperm):
            env = installperm.system(externally_managed=False, locked=())
            _wait(RV / "victim")
            root, target = (RV / "victim").read_text().split("\\n")
            _wait(Path(target + ".ready"))
            try:
                result = env.run([env.python, _script(env, ATTACK), root, target], timeout=300)
            finally:
                (Path(root) / "tmp" / "attacked").touch()
                (RV / "attacked").touch()
            assert result.returncode == 0, result.describe()
            assert "KILLED" not in result.stdout and "WROTE" not in result.stdout
            assert "REACHED" not in result.stdout
            assert result.stdout.count("DENIED") == 2, result.stdout
        """
    )
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert (rendezvous / "attacked").exists()
    assert int((rendezvous / "victim-pid").read_text()) != os.getpid()


# -- class 6: bounded resources --------------------------------------------------


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_flood_is_capped(installperm: InstallPerm, stream: str) -> None:
    env = installperm.system(externally_managed=False, locked=())
    total = 64 * MiB
    script = _script(
        env,
        f"""
        import sys
        out = sys.{stream}.buffer
        out.write(b"HEAD" + b"h" * 1000)
        chunk = b"x" * (1 << 20)
        for _ in range({total // MiB}):
            out.write(chunk)
        out.write(b"TAIL")
        """,
    )
    result = env.run([env.python, script], limits=Limits(output_bytes=MiB))
    assert result.returncode == 0, result.describe()
    text = getattr(result, stream)
    dropped = getattr(result, f"{stream}_dropped")
    assert text.startswith("HEAD") and text.endswith("TAIL"), text[:20]
    assert dropped == total + 1008 - MiB, dropped
    assert len(text) < MiB + 1000
    assert f"{dropped} bytes of output dropped here" in text
    assert f"{stream} truncated: {dropped} bytes dropped" in result.describe()
    other = "stderr" if stream == "stdout" else "stdout"
    assert getattr(result, f"{other}_dropped") == 0


def test_default_output_cap(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    over = DEFAULT_LIMITS.output_bytes + 3 * MiB
    script = _script(env, f"import sys; sys.stdout.buffer.write(b'y' * {over})")
    result = env.run([env.python, script])
    assert result.stdout_dropped == 3 * MiB, result.describe()


def test_fork_bomb_is_bounded(installperm: InstallPerm) -> None:
    """Every process forks forever; the process limit holds and the timeout
    ends them all (the bomb sleeps between forks, to spare a shared machine)."""
    env = installperm.system(externally_managed=False, locked=())
    name = canary_name()
    script = _script(
        env,
        f"""
        import os, time
        {set_name_code(name)}
        most = 0
        while True:
            try:
                os.fork()
            except OSError:
                pass
            if os.getpid() == 1:
                most = max(most, sum(p.isdigit() for p in os.listdir("/proc")))
                open("/proc/self/cwd/most", "w").write(str(most))
            time.sleep(0.05)
        """,
    )
    result = env.run([env.python, script], timeout=4, limits=Limits(processes=24))
    assert result.timed_out, result.describe()
    most = int((env.sandbox.work / "most").read_text())
    assert 10 < most <= 24, most
    assert host_processes_named(name) == []


def test_file_size_limit(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    script = _script(
        env,
        """
        import errno
        try:
            open("big", "wb").write(b"z" * (3 << 20))
            print("WROTE")
        except OSError as exc:
            print(errno.errorcode[exc.errno])
        """,
    )
    result = env.run([env.python, script], limits=Limits(file_size=MiB))
    assert result.stdout.strip() == "EFBIG", result.describe()
    assert (env.sandbox.work / "big").stat().st_size == MiB
    shell = env.run(["sh", "-c", "head -c 3000000 /dev/zero > big2"], limits=Limits(file_size=MiB))
    assert shell.returncode in (-25, 153), shell.describe()  # SIGXFSZ, or the shell's 128+25


def test_cpu_limit(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    result = env.run(
        [env.python, "-c", "while True: pass"], timeout=60, limits=Limits(cpu_seconds=1)
    )
    # pid 1 of its namespace ignores SIGXCPU (no handler): the hard limit's
    # SIGKILL, a second later, ends it.
    assert result.returncode == -9, result.describe()
    assert not result.timed_out
    assert result.duration_s < 30


# -- class 7: network and IPC ----------------------------------------------------


@pytest.fixture
def host_listeners(installperm: InstallPerm) -> dict[str, object]:
    """A unix socket, an abstract socket and a loopback TCP listener on the host,
    all reachable by any uid (the unix socket is 0777 in a 0755 directory)."""
    env = installperm.system(externally_managed=False, locked=())
    where = env.root.parent / f"host-{canary_name()}"
    where.mkdir()
    os.chmod(where, 0o755)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(where / "s"))
    os.chmod(where / "s", 0o777)
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"\0installperm-{canary_name()}"
    abstract.bind(abstract_name)
    abstract.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    yield {
        "env": env,
        "unix": str(where / "s"),
        "abstract": abstract_name,
        "tcp": tcp.getsockname()[1],
    }
    for s in (unix, abstract, tcp):
        s.close()
    (where / "s").unlink()
    where.rmdir()


PROBE = """
import socket, sys
unix, abstract, port = sys.argv[1], sys.argv[2].replace("@", "\\0"), int(sys.argv[3])
for what, family, address in (
    ("unix", socket.AF_UNIX, unix),
    ("abstract", socket.AF_UNIX, abstract),
    ("tcp", socket.AF_INET, ("127.0.0.1", port)),
):
    s = socket.socket(family)
    s.settimeout(2)
    try:
        s.connect(address)
        print(what, "CONNECTED")
    except OSError as exc:
        print(what, "refused", exc.errno)
    finally:
        s.close()
"""


def test_host_sockets_are_out_of_reach(host_listeners: dict[str, object]) -> None:
    env = host_listeners["env"]
    assert isinstance(env, Environment)
    script = _script(env, PROBE)
    args = [host_listeners["unix"], str(host_listeners["abstract"]).replace("\0", "@")]
    result = env.run([env.python, script, *args, str(host_listeners["tcp"])])
    assert result.returncode == 0, result.describe()
    assert "CONNECTED" not in result.stdout, result.stdout
    assert result.stdout.count("refused") == 3, result.stdout


def test_network_opt_in_reaches_loopback(host_listeners: dict[str, object]) -> None:
    """``network=True`` keeps the host's network: an index server on loopback
    is reachable; host unix sockets stay covered."""
    env = host_listeners["env"]
    assert isinstance(env, Environment)
    script = _script(env, PROBE)
    args = [host_listeners["unix"], str(host_listeners["abstract"]).replace("\0", "@")]
    result = env.run([env.python, script, *args, str(host_listeners["tcp"])], network=True)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["tcp"] == "CONNECTED", result.stdout
    assert lines["abstract"] == "CONNECTED", result.stdout  # same network namespace
    assert lines["unix"].startswith("refused"), result.stdout


def test_loopback_inside_works(installperm: InstallPerm) -> None:
    """The child's own loopback is up: a server and client inside it talk."""
    env = installperm.system(externally_managed=False, locked=())
    script = _script(
        env,
        """
        import socket
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname(), timeout=2)
        print("OK")
        """,
    )
    result = env.run([env.python, script])
    assert result.stdout.strip() == "OK", result.describe()


def _sysv_keys(kind: str) -> set[str]:
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {line.split()[0] for line in lines}


def test_sysv_ipc_does_not_outlive_the_run(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    key = 0x1A57 + os.getpid()
    before = {k: _sysv_keys(k) for k in ("shm", "sem", "msg")}
    script = _script(
        env,
        f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.shmget({key}, 4096, 0o1666) >= 0, ctypes.get_errno()
        assert libc.semget({key}, 1, 0o1666) >= 0, ctypes.get_errno()
        assert libc.msgget({key}, 0o1666) >= 0, ctypes.get_errno()
        print(open("/proc/sysvipc/shm").read().count("{key}"))
        """,
    )
    result = env.run([env.python, script])
    assert result.returncode == 0, result.describe()
    assert result.stdout.strip() == "1", result.stdout  # it existed, in its own namespace
    after = {k: _sysv_keys(k) for k in ("shm", "sem", "msg")}
    assert after == before
    assert all(str(key) not in keys for keys in after.values())
