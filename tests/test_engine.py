"""The engine against real pip and uv: the report that started the project,
Debian's interpreter, venvs, isolation, timeouts, bad input and cleanup.

As root these run under the privdrop backend; ``test_*_as_normal_user`` runs
the same checks in an inner pytest as an unprivileged uid (the chmod backend).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from engine_checks import FALLBACK, check_pip_fell_back, check_uv_denied
from processes import canary_name, host_processes_named, set_name_code

from pytest_installperm import Environment, FakefsError, InstallPerm, InterpreterError, RoleError

DEBIAN = Path("/usr/bin/python3.11")


def test_report_reproduced_pip_falls_back(installperm: InstallPerm, demo_wheel: Path) -> None:
    env = installperm.system(externally_managed=False, locked=("system",))
    assert env.kind == "system" and not (env.prefix / "pyvenv.cfg").exists()
    check_pip_fell_back(env, env.pip("install", demo_wheel))


def test_report_reproduced_uv_is_denied(installperm: InstallPerm, demo_wheel: Path) -> None:
    env = installperm.system(externally_managed=False, locked=("system",))
    result = env.run(["uv", "pip", "install", "--python", env.python, "--system", demo_wheel])
    check_uv_denied(env, result)


def test_report_reproduced_as_normal_user(unprivileged, demo_wheel: Path) -> None:
    """The same two checks, run by an inner pytest as a non-root uid."""
    inner = unprivileged.runpytest(
        f"""
        import os
        from pathlib import Path
        from engine_checks import check_pip_fell_back, check_uv_denied

        WHEEL = Path({demo_wheel.name!r}).resolve()

        def test_pip(installperm):
            assert os.geteuid() != 0
            env = installperm.system(externally_managed=False, locked=("system",))
            assert env.backend == "chmod"
            check_pip_fell_back(env, env.pip("install", WHEEL))

        def test_uv(installperm):
            env = installperm.system(externally_managed=False, locked=("system",))
            assert env.backend == "chmod"
            result = env.run(["uv", "pip", "install", "--python", env.python, "--system", WHEEL])
            check_uv_denied(env, result)
    """,
        modules={"engine_checks": (Path(__file__).parent / "engine_checks.py").read_text()},
        files=(demo_wheel,),
    )
    inner.assert_outcomes(passed=2)


@pytest.mark.skipif(not DEBIAN.exists(), reason=f"{DEBIAN} (Debian's interpreter) is not here")
class TestDebianBase:
    """Debian's own interpreter: PEP 668, dist-packages and posix_local kept."""

    def test_pip_refuses_externally_managed(
        self, installperm: InstallPerm, demo_wheel: Path
    ) -> None:
        env = installperm.system(python=DEBIAN, locked=("system",))
        result = env.pip("install", demo_wheel)
        assert result.returncode != 0
        assert "externally-managed-environment" in result.stderr
        assert not result.changes.under("system") and not result.changes.under("user")

    def test_break_system_packages_falls_back(
        self, installperm: InstallPerm, demo_wheel: Path
    ) -> None:
        env = installperm.system(python=DEBIAN, locked=("system",))
        check_pip_fell_back(env, env.pip("install", "--break-system-packages", demo_wheel))

    def test_paths_are_debians_own(self, installperm: InstallPerm) -> None:
        env = installperm.system(python=DEBIAN, locked=(), mode="relocated")
        probe = env.run(
            [
                DEBIAN,
                "-I",
                "-c",
                "import json, sys, sysconfig; "
                "print(json.dumps([sys.prefix, sysconfig.get_paths()]))",
            ]
        )
        real_prefix, real = json.loads(probe.stdout)
        system = env.paths("system")
        for key in ("purelib", "platlib", "scripts"):
            expected = env.prefix / os.path.relpath(real[key], real_prefix)
            assert system[key] == expected, key
        assert "dist-packages" in str(system["purelib"]) and "/local/" in str(system["purelib"])
        marker = env.prefix / "lib" / "python3.11" / "EXTERNALLY-MANAGED"
        assert marker.exists()


class TestVenv:
    def test_locked_venv_fails_without_fallback(
        self, installperm: InstallPerm, demo_wheel: Path
    ) -> None:
        env = installperm.venv(system_site_packages=False, locked=("system",))
        assert (env.prefix / "pyvenv.cfg").is_file()
        result = env.pip("install", demo_wheel)
        assert result.returncode != 0
        assert "[Errno 13] Permission denied" in result.stderr
        assert "Check the permissions." in result.stderr
        assert "--user" not in result.stderr
        assert FALLBACK not in result.stdout
        assert not result.changes.under("user") and not result.changes.under("system")

    def test_venv_with_system_site_packages_falls_back(
        self, installperm: InstallPerm, demo_wheel: Path
    ) -> None:
        env = installperm.venv(system_site_packages=True, locked=("system",))
        check_pip_fell_back(env, env.pip("install", demo_wheel))


def test_host_environment_does_not_leak(
    installperm: InstallPerm, demo_wheel: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    leaks = {
        "PIP_FIND_LINKS": str(tmp_path),
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PYTHONPATH": str(tmp_path),
        "UV_INDEX_URL": "http://127.0.0.1:9/simple",
        "XDG_CONFIG_HOME": str(tmp_path),
        "HOME": str(tmp_path),
    }
    for key, value in leaks.items():
        monkeypatch.setenv(key, value)
    env = installperm.system(externally_managed=False, locked=("system",))
    seen = env.run([env.python, "-c", "import json, os; print(json.dumps(dict(os.environ)))"])
    child = json.loads(seen.stdout)
    assert not set(leaks) - {"XDG_CONFIG_HOME", "HOME"} & set(child)
    assert child["HOME"] == str(env.home) and child["XDG_CONFIG_HOME"].startswith(str(env.root))
    result = env.pip("install", demo_wheel)
    assert "Looking in links" not in result.output
    assert result.returncode == 0, result.describe()


def test_caller_env_is_passed_and_removed(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    code = "import os; print(os.environ.get('PIP_USER'), os.environ.get('PIP_NO_INPUT'))"
    result = env.run([env.python, "-c", code], env={"PIP_USER": "1", "PIP_NO_INPUT": None})
    assert result.stdout.split() == ["1", "None"]


def test_timeout_kills_the_pid_namespace(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    name = canary_name()
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', "
        f"{set_name_code(name) + '; import time; time.sleep(600)'!r}]); time.sleep(600)"
    )
    result = env.run([env.python, "-c", code], timeout=2)
    assert result.timed_out
    assert "timed out after 2" in result.describe()
    assert "PID namespace was killed" in result.stderr, result.stderr
    assert host_processes_named(name) == [], "a grandchild survived the timeout"


def test_call_is_refused_in_the_real_world(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    with pytest.raises(FakefsError, match=r"env\.call.*cannot see a real sandbox"):
        env.call(print, "never runs in this process")


def test_missing_command_is_a_result(installperm: InstallPerm) -> None:
    env = installperm.system(externally_managed=False, locked=())
    result = env.run(["no-such-installer-xyz", "install", "x"])
    assert result.returncode == 127
    assert result.error is not None and "No such file or directory" in result.error
    assert "could not start" in result.describe()


def test_missing_interpreter_names_path_and_reason(
    installperm: InstallPerm, tmp_path: Path
) -> None:
    missing = tmp_path / "python9.9"
    with pytest.raises(InterpreterError, match=rf"base interpreter {missing}: does not exist"):
        installperm.system(python=missing)


def test_venv_interpreter_is_refused(installperm: InstallPerm, tmp_path: Path) -> None:
    import sys

    if sys.prefix == sys.base_prefix:
        pytest.skip("this suite does not run in a venv, so there is no venv python to refuse")
    with pytest.raises(InterpreterError, match="belongs to the virtual environment"):
        installperm.system(python=sys.executable)


def test_unknown_role_is_a_value_error(installperm: InstallPerm) -> None:
    with pytest.raises(ValueError, match="valid roles are home, system, system-scripts, user"):
        installperm.system(externally_managed=False, locked=("site",))
    with pytest.raises(RoleError):
        installperm.system(externally_managed=False, locked=()).paths("home")


class TestLocksHold:
    """Each lock denies the child for real (one short Python probe per lock)."""

    WRITE = (
        "import os, sys\n"
        "try:\n"
        "    os.makedirs(os.path.join(sys.argv[1], 'probe-dir'))\n"
        "    print('WROTE')\n"
        "except OSError as e:\n"
        "    print('DENIED', e.errno)\n"
    )

    def probe(self, env: Environment, target: Path) -> str:
        return env.run([env.python, "-c", self.WRITE, str(target)]).stdout.strip()

    def test_system_locked_user_open(self, installperm: InstallPerm) -> None:
        env = installperm.system(externally_managed=False, locked=("system",))
        assert self.probe(env, env.paths("system")["purelib"]) == "DENIED 13"
        assert self.probe(env, env.paths("system")["scripts"]) == "DENIED 13"
        assert self.probe(env, env.home) == "WROTE"

    def test_scripts_only(self, installperm: InstallPerm) -> None:
        env = installperm.system(externally_managed=False, locked=("system-scripts",))
        assert self.probe(env, env.paths("system")["scripts"]) == "DENIED 13"
        assert self.probe(env, env.paths("system")["purelib"]) == "WROTE"

    def test_user_base_locked(self, installperm: InstallPerm) -> None:
        env = installperm.system(externally_managed=False, locked=("system", "user"))
        assert self.probe(env, env.userbase) == "DENIED 13"
        assert self.probe(env, env.home) == "WROTE"

    @pytest.mark.parametrize("home", ["missing", "unwritable"])
    def test_home(self, installperm: InstallPerm, home: str) -> None:
        env = installperm.system(externally_managed=False, locked=(), home=home)
        assert env.home.exists() is (home == "unwritable")
        target = env.home if home == "unwritable" else env.home.parent
        assert self.probe(env, target) == "DENIED 13"

    def test_user_site_off(self, installperm: InstallPerm) -> None:
        env = installperm.system(externally_managed=False, locked=(), user_site=False)
        out = env.run([env.python, "-c", "import site; print(site.ENABLE_USER_SITE)"])
        assert out.stdout.strip() == "False"

    @pytest.mark.parametrize("mode", ["relocated", "auto"])
    def test_externally_managed_on_and_off(self, installperm: InstallPerm, mode: str) -> None:
        """As the child sees its stdlib (in place: an overlay on the real one)."""
        code = (
            "import os, sysconfig; stdlib = sysconfig.get_path('stdlib'); "
            "print(os.path.exists(os.path.join(stdlib, 'EXTERNALLY-MANAGED')))"
        )
        for wanted in (True, False):
            env = installperm.system(locked=(), externally_managed=wanted, mode=mode)
            seen = env.run([env.python, "-c", code])
            assert seen.stdout.strip() == str(wanted), seen.describe()


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what happens when chmod is forced as root")
def test_forced_chmod_as_root_skips_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_locked(installperm):
            installperm.system(externally_managed=False, locked=("system",))
            raise AssertionError("a lock that root walks through must never get here")

        def test_unlocked(installperm):
            assert installperm.system(externally_managed=False, locked=()).backend == "chmod"
    """)
    result = pytester.runpytest("--installperm-backend", "chmod", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*backend 'chmod' cannot make the lock*root (uid 0)*"])


def test_sandboxes_and_session_root_are_removed(pytester: pytest.Pytester) -> None:
    """0555 dirs, files the child created as another uid, a timed-out run: all gone."""
    record = pytester.path / "roots.txt"
    pytester.makepyfile(f"""
        from pytest_installperm.fixtures import get_session

        def test_leave_a_mess(installperm, request):
            env = installperm.system(externally_managed=False, locked=("system",))
            code = ("import os; d = os.path.join(os.environ['HOME'], 'ro'); os.makedirs(d); "
                    "open(os.path.join(d, 'f'), 'w').write('x'); os.chmod(d, 0o555)")
            assert env.run([env.python, "-c", code]).returncode == 0
            env.run([env.python, "-c", "import time; time.sleep(60)"], timeout=0.5)
            root = get_session(request.config).root.path
            open({str(record)!r}, "w").write(f"{{env.root}}\\n{{root}}\\n")
    """)
    pytester.runpytest().assert_outcomes(passed=1)
    sandbox, session_root = record.read_text().split()
    assert not Path(sandbox).exists()
    assert not Path(session_root).exists()


def test_session_roots_of_dead_processes_are_swept(tmp_path: Path) -> None:
    """A pytest killed with SIGKILL leaves its root; the next session removes it."""
    import subprocess
    import sys

    from pytest_installperm.sandbox import OWNER_FILE, SessionRoot

    code = (
        "import sys; from pytest_installperm.sandbox import SessionRoot; "
        f"print(SessionRoot({str(tmp_path)!r}).path)"
    )
    orphan = Path(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    (orphan / "ro").mkdir()
    (orphan / "ro").chmod(0o555)
    assert (orphan / OWNER_FILE).exists()
    alive = SessionRoot(str(tmp_path))
    assert not orphan.exists()
    assert SessionRoot(str(tmp_path)).path.exists() and alive.path.exists()


def test_imports_write_no_bytecode_into_an_unlocked_prefix(installperm: InstallPerm) -> None:
    """The template carries the stdlib's bytecode, so a child that imports does
    not write caches into the system scheme: they would look like residue."""
    env = installperm.system(externally_managed=False, locked=())
    result = env.run(
        [env.python, "-c", "import json, email.parser, zipfile, argparse, sysconfig, site"]
    )
    assert result.returncode == 0, result.describe()
    assert result.changes.under("system") == set(), result.changes.under("system")
