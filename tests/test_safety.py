"""Hostile wheels and hostile installers stay inside their sandbox.

Each test attacks from inside a child and then checks three things: nothing
landed outside the sandbox (the real stdlib, /tmp and the other temporary
directories are checked directly, not through our own change tracking), the
sandbox is gone after the factory closes, and the run's verdict says what
happened (exit status, errno, timed_out). Wheels with bad paths are crafted
with zipfile here, because a well-behaved wheel builder refuses to make them.

These run as root in CI: the worst case, since root could write anywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import signal
import stat
import sysconfig
import textwrap
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import canary_name, host_processes_named, set_name_code

from pytest_installperm import BackendError, Environment, InstallPerm
from pytest_installperm.backends import contain
from pytest_installperm.backends.contain import probe, syscalls
from pytest_installperm.world.real import RealWorld

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TEMP_DIRS = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def craft_wheel(
    directory: Path,
    name: str,
    members: dict[str, bytes],
    *,
    record_extra: tuple[str, ...] = (),
    links: dict[str, str] | None = None,
) -> Path:
    """A wheel with exactly ``members`` (any names, ``..`` and absolute too),
    a RECORD that lists them (plus ``record_extra`` lines), and ``links``
    stored as zip symlink members (name -> target)."""
    dist_info = f"{name}-1.0.dist-info"
    files = dict(members)
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: installperm-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for member, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(data)}")
    record += [*record_extra, f"{dist_info}/RECORD,,"]
    path = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, target in (links or {}).items():
            info = zipfile.ZipInfo(member, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
        for member, data in files.items():
            archive.writestr(zipfile.ZipInfo(member, (1980, 1, 1, 0, 0, 0)), data)
        archive.writestr(
            zipfile.ZipInfo(f"{dist_info}/RECORD", (1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n"
        )
    return path


def _listing(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


@pytest.fixture
def outside() -> Iterator[str]:
    """A unique canary name; afterwards no entry with it may exist outside,
    and no new entry may appear in the real stdlib or the temp dirs."""
    canary = f"installperm-canary-{uuid.uuid4().hex[:12]}"
    watched = [STDLIB, STDLIB / "json", *TEMP_DIRS]
    before = {d: _listing(d) for d in watched}
    yield canary
    leaks = []
    for directory in watched:
        for name in sorted(_listing(directory) - before[directory]):
            if canary in name or directory in (STDLIB, STDLIB / "json"):
                leaks.append(directory / name)
    for path in leaks:  # never leave the damage behind, then fail loudly
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    assert not leaks, f"a child wrote outside its sandbox: {leaks}"


def _closed(installperm: InstallPerm, env: Environment) -> None:
    """Close the factory and check the sandbox is gone, whatever the child did."""
    root = env.root
    installperm.close()
    assert not root.exists(), f"sandbox {root} survived its factory"


# -- hostile wheels ------------------------------------------------------------

HOSTILE = {
    # name -> (members, record_extra, links); CANARY is replaced per test
    "dotdot": ({"../../../../../../../../../../tmp/CANARY": b"x"}, (), None),
    "dotdot-sandbox": ({"../../../../CANARY": b"x"}, (), None),
    "absolute": ({"/tmp/CANARY": b"x"}, (), None),
    "data-dotdot": ({"evil-1.0.data/data/../../../../../../../../../tmp/CANARY": b"x"}, (), None),
    "record-only": ({"evil/__init__.py": b""}, ("../../../../../../../../tmp/CANARY,,",), None),
    "symlink": ({"evil/__init__.py": b"", "evil/link/CANARY": b"x"}, (), {"evil/link": "/tmp"}),
}


def _hostile(tmp_path: Path, kind: str, canary: str) -> Path:
    members, extra, links = HOSTILE[kind]
    return craft_wheel(
        tmp_path,
        "evil",
        {k.replace("CANARY", canary): v for k, v in members.items()},
        record_extra=tuple(e.replace("CANARY", canary) for e in extra),
        links=links,
    )


@pytest.mark.parametrize("installer", ["pip", "uv"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_wheel_stays_inside(
    installperm: InstallPerm, tmp_path: Path, outside: str, kind: str, installer: str
) -> None:
    env = installperm.system(externally_managed=False, locked=())
    wheel = _hostile(tmp_path, kind, outside)
    if installer == "pip":
        result = env.pip("install", "--no-index", "--no-deps", wheel)
    else:
        result = env.run(
            [
                "uv",
                "pip",
                "install",
                "--offline",
                "--no-deps",
                "--python",
                env.python,
                "--system",
                wheel,
            ]
        )
    assert result.error is None, result.describe()  # a missing uv must not pass
    assert not result.outside, f"writes outside the allowed roles:\n{result.describe()}"
    landed = sorted(str(p) for p in result.changes.all if outside in p.name)
    if kind in ("dotdot", "dotdot-sandbox", "absolute", "data-dotdot"):
        # a member that leaves its scheme: pip refuses the wheel, uv skips the
        # member; either way the canary exists nowhere, inside or outside
        assert not landed, landed
        if installer == "pip":
            assert result.returncode != 0, result.describe()
            assert "outside the target directory" in result.output or (
                "valid scheme key" in result.output
            ), result.describe()
    else:
        # RECORD-only and symlink members: whatever the installer does, the
        # canary is at most a file inside the site, never behind /tmp
        for path in landed:
            assert env.role_of(Path(path)) == "system", path
            assert not Path(path).is_symlink(), path
    _closed(installperm, env)


@pytest.mark.parametrize("backend", ["chmod", "privdrop"])
def test_write_through_stdlib_wheel(
    installperm: InstallPerm, tmp_path: Path, outside: str, backend: str
) -> None:
    """Data files aimed at lib/pythonXY.zip/json/ would pass through the symlink
    to the stdlib (the way the sandbox's interpreter finds it) into the template
    or the real interpreter. Under ``chmod`` as root the child is uid 0 (without
    capabilities) and owns the real stdlib: only the read-only mount namespace
    stands in the way."""
    env = installperm.system(externally_managed=False, locked=(), backend=backend)
    if env.paths("system")["data"] != env.prefix:
        pytest.skip(
            f"this base's data scheme is {env.paths('system')['data']}, not the prefix "
            "(Debian's posix_local): .data/data cannot reach the stdlib without '..', "
            "which test_hostile_wheel_stays_inside covers"
        )
    stdlib = f"python{sysconfig.get_python_version().replace('.', '')}.zip"
    assert (env.prefix / "lib" / stdlib / "json").is_dir()
    wheel = craft_wheel(
        tmp_path,
        "evil",
        {
            "evil/__init__.py": b"",
            f"evil-1.0.data/data/lib/{stdlib}/json/{outside}.py": b"raise SystemExit('pwned')\n",
        },
    )
    result = env.pip("install", "--no-index", "--no-deps", wheel)
    assert result.returncode != 0, result.describe()
    expected = "Read-only file system" if backend == "chmod" else "Errno"
    assert expected in result.output, result.describe()
    assert not (STDLIB / "json" / f"{outside}.py").exists()
    assert not result.outside, result.describe()
    _closed(installperm, env)


# -- hostile installers -----------------------------------------------------------


def _script(env: Environment, body: str) -> Path:
    """Write a child script into the sandbox's work dir, readable by the child."""
    path = env.sandbox.work / "hostile.py"
    path.write_text(textwrap.dedent(body))
    os.chmod(path, 0o644)
    env.snapshot().update()  # our write, not the child's
    return path


def test_installer_writing_outside(installperm: InstallPerm, outside: str) -> None:
    env = installperm.system(externally_managed=False, locked=("system",))
    targets = [
        env.home / ".." / outside,
        Path("/tmp") / outside,
        Path("/var/tmp") / outside,
        Path("/dev/shm") / outside,
        STDLIB / outside,
        env.root.parent / outside,
    ]
    script = _script(
        env,
        f"""
        import os
        for target in {[str(t) for t in targets]!r}:
            try:
                with open(target, "w") as f:
                    f.write("escaped")
                print("WROTE", target)
            except OSError as exc:
                print("DENIED", exc.errno, target)
    """,
    )
    result = env.run([env.python, script])
    assert result.returncode == 0, result.describe()
    assert "WROTE" not in result.stdout, result.stdout
    assert result.stdout.count("DENIED") == len(targets), result.stdout
    assert not result.outside and not result.changes, result.describe()
    for target in targets:
        assert not target.exists(), target
    _closed(installperm, env)


@pytest.mark.parametrize(
    ("backend", "lock_mode", "errno_name"),
    [("privdrop", "deny", "EPERM"), ("mountns", "readonly-fs", "EROFS")],
)
def test_installer_chmods_locked_dir_back(
    installperm: InstallPerm, backend: str, lock_mode: str, errno_name: str
) -> None:
    if os.geteuid() != 0 and backend == "privdrop":
        pytest.skip("the privdrop backend needs root")
    env = installperm.system(
        externally_managed=False, locked=("system",), lock_mode=lock_mode, backend=backend
    )
    purelib = env.paths("system")["purelib"]
    mode = stat.S_IMODE(os.stat(purelib).st_mode)
    script = _script(
        env,
        f"""
        import errno, os
        try:
            os.chmod({str(purelib)!r}, 0o777)
            print("CHMOD ok")
        except OSError as exc:
            print("CHMOD", errno.errorcode[exc.errno])
        try:
            open(os.path.join({str(purelib)!r}, "evil.py"), "w").close()
            print("WRITE ok")
        except OSError as exc:
            print("WRITE", errno.errorcode[exc.errno])
    """,
    )
    result = env.run([env.python, script])
    assert f"CHMOD {errno_name}" in result.stdout, result.describe()
    assert "WRITE ok" not in result.stdout, result.describe()
    assert stat.S_IMODE(os.stat(purelib).st_mode) == mode
    assert not result.changes.under("system"), result.changes
    _closed(installperm, env)


def test_installer_killed_midway(installperm: InstallPerm, outside: str) -> None:
    """SIGKILLed from outside (as the OOM killer would) after a partial write."""
    env = installperm.system(externally_managed=False, locked=("system",))
    target = env.paths("user")["purelib"]
    name = canary_name()
    script = _script(
        env,
        f"""
        import os, time
        os.makedirs({str(target)!r}, exist_ok=True)
        open(os.path.join({str(target)!r}, "half.py"), "w").write("# half written")
        {set_name_code(name)}
        time.sleep(60)
        open(os.path.join({str(target)!r}, "never.py"), "w").close()
    """,
    )

    def killer() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for pid in host_processes_named(name):
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer)
    thread.start()
    result = env.run([env.python, script], timeout=60)
    thread.join()
    assert result.returncode == -signal.SIGKILL, result.describe()
    assert not result.timed_out
    assert target / "half.py" in result.changes.created
    assert target / "never.py" not in result.changes.created
    assert not result.outside, result.describe()
    _closed(installperm, env)


def test_installer_hanging_until_timeout(installperm: InstallPerm, outside: str) -> None:
    """It also leaves a daemon behind (new session, out of the process group)
    that keeps writing; killing the PID namespace must end it too."""
    env = installperm.system(externally_managed=False, locked=("system",))
    name = canary_name()
    trail = env.sandbox.tmp / "trail"
    script = _script(
        env,
        f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                {set_name_code(name)}
                while True:
                    for where in ({str(env.sandbox.tmp)!r}, "/tmp"):
                        try:
                            open(os.path.join(where, {outside!r}), "a").write(".")
                        except OSError:
                            pass
                    open({str(trail)!r}, "a").write(".")
                    time.sleep(0.05)
            os._exit(0)
        while not os.path.exists({str(trail)!r}):
            time.sleep(0.01)
        time.sleep(600)
    """,
    )
    result = env.run([env.python, script], timeout=3)
    assert result.timed_out, result.describe()
    assert "timed out after 3s" in result.describe()
    assert trail.exists(), result.describe()  # the daemon ran
    assert host_processes_named(name) == [], "the daemon outlived its run"
    size = trail.stat().st_size
    time.sleep(0.3)
    assert trail.stat().st_size == size, "something still writes to the sandbox"
    assert not result.outside, result.describe()
    _closed(installperm, env)


# -- where no namespace is possible: no run at all --------------------------------


def test_no_namespace_means_skip(installperm: InstallPerm, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the platform allows no namespace: the environment is refused
    with the reason (a skip), never built for an uncontained child."""
    monkeypatch.setattr(probe, "_MODE", [("none", "mount: EPERM (forced by the test)")])
    with pytest.raises(pytest.skip.Exception) as caught:
        installperm.system(externally_managed=False, locked=("system",))
    message = str(caught.value)
    assert "containment is not possible on this platform" in message, message
    assert "forced by the test" in message, message


def test_no_namespace_refuses_a_run(installperm: InstallPerm) -> None:
    """A containment built for mode "none" (no probe said yes) never starts a child."""
    env = installperm.system(externally_managed=False, locked=())
    env.world._backend._containment = contain.Containment(env.root, "none")
    with pytest.raises(BackendError, match="cannot start a child"):
        env.run([env.python, "-c", "open('/tmp/never', 'w')"])
    assert not Path("/tmp/never").exists()
    _closed(installperm, env)


def test_remount_fallback_for_old_kernels(
    installperm: InstallPerm, monkeypatch: pytest.MonkeyPatch, outside: str
) -> None:
    """Kernels before 5.12 have no mount_setattr: each mount is remounted
    instead. Pointing the syscall number at nothing takes that path here."""
    monkeypatch.setattr(syscalls, "SYS_MOUNT_SETATTR", 99999)  # ENOSYS
    env = installperm.system(externally_managed=False, locked=("system",), lock_mode="readonly-fs")
    purelib = env.paths("system")["purelib"]
    script = _script(
        env,
        f"""
        import errno
        for target in ({str(purelib / outside)!r}, "/tmp/{outside}", "{env.home}/{outside}"):
            try:
                open(target, "w").close()
                print("WROTE", target)
            except OSError as exc:
                print(errno.errorcode[exc.errno], target)
    """,
    )
    result = env.run([env.python, script])
    lines = result.stdout.splitlines()
    assert lines == [
        f"EROFS {purelib / outside}",
        f"EROFS /tmp/{outside}",
        f"WROTE {env.home}/{outside}",
    ], result.describe()
    _closed(installperm, env)


def test_containment_that_cannot_start_is_an_error(installperm: InstallPerm) -> None:
    """A backend that fails to put the child in place raises BackendError; it
    never returns a result that a test could mistake for an installer's."""
    env = installperm.system(externally_managed=False, locked=())
    world = env.world
    assert isinstance(world, RealWorld)
    world.plan = dataclasses.replace(
        world.plan, deny=((env.root / "no-such-dir", True),), readonly_fs=True
    )
    with pytest.raises(BackendError, match="bind a locked tree"):
        env.run([env.python, "-c", "pass"])
    _closed(installperm, env)
