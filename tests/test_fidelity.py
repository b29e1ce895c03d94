"""Real system vs plugin, same scenario, for Debian 11, 12, 13 and sid.

The real side runs in a debootstrapped release (made by ``.ci/rootfs``): the
release's own ``/usr/bin/python3.X`` in its real place, the real uid 1000, a
real root-owned ``/usr/local/lib/python3.X/dist-packages``, pip 26.3 (26.0.1
on Python 3.9) and uv 0.13.8 installed there by root, each scenario in a
throw-away overlay whose upper directory is exactly what the run wrote. The
plugin's side runs the same scenario through ``installperm.system()`` or
``venv()`` on that release's interpreter: on the host where it runs here
(Debian 11 and 12), inside the rootfs where it needs its own libc (13, sid).
Outcome, pip's and uv's key messages, and every file per role must agree.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import rootfs
from fidelity import (
    REAL_HOMES,
    REAL_PREFIX,
    REAL_VENV,
    SCENARIOS,
    Scenario,
    classify,
    observation,
    observe_plugin,
    real_anchors,
    real_setup,
)

from pytest_installperm import InstallPerm

#: Releases whose interpreter runs on this host (an older or the same glibc).
ON_HOST = ("bullseye", "bookworm")
DEMO = "demo-1.0-py3-none-any.whl"
REPO = Path(__file__).resolve().parent.parent


def release(suite: str) -> rootfs.Rootfs:
    found = rootfs.find(suite)
    if found is None:
        pytest.skip(rootfs.missing_reason(suite))
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo wheel and the cached pip wheels, readable by the rootfs's tester."""
    from pytest_installperm.wheels import build_wheel

    top = tmp_path_factory.mktemp("fidelity-wheels")
    for python, source in (("py3", "py3"), ("py39", "py39")):
        target = top / python
        target.mkdir()
        for wheel in (rootfs.CACHE / "wheels" / source).glob("pip-*.whl"):
            shutil.copy2(wheel, target / wheel.name)
        build_wheel(
            target,
            "demo",
            "1.0",
            purelib={"demo/__init__.py": "def main():\n    print('demo ran')\n"},
            console_scripts={"demo-cli": "demo:main"},
        )
    for path in [top, *top.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return top


def wheel_set(python: str) -> str:
    return "py39" if python == "3.9" else "py3"


def _upper_state(upper: Path) -> dict[str, tuple[str, int, int]]:
    state = {}
    for change in rootfs.changes(upper):
        info = os.lstat(upper / "upper" / change.path.lstrip("/"))
        state[change.path] = (change.kind, info.st_size, info.st_mtime_ns)
    return state


def observe_real(
    system: rootfs.Rootfs, scenario: Scenario, wheels: Path, work: Path
) -> dict[str, Any]:
    """The scenario on the real system, in a fresh overlay of the release."""
    upper = work / "overlay"
    upper.mkdir()
    wheel_dir = wheels / wheel_set(system.python)
    binds = [rootfs.Bind(str(wheel_dir), "/wheels")]
    pip_wheel = "/wheels/" + next(wheel_dir.glob("pip-*.whl")).name
    setup = system.run(["sh", "-c", real_setup(scenario, pip_wheel)], upper=upper, binds=binds)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    before = _upper_state(upper)
    home = REAL_HOMES[scenario.home]
    env = {**rootfs.default_env(rootfs.TESTER_UID), "HOME": home, **scenario.env}
    if not scenario.user_site:
        env["PYTHONNOUSERSITE"] = "1"
    python = "/usr/bin/python3" if scenario.kind == "system" else f"{REAL_VENV}/bin/python"
    run = system.run(
        [str(a) for a in scenario.argv(python, f"/wheels/{DEMO}", REAL_PREFIX)],
        upper=upper,
        uid=rootfs.TESTER_UID,
        env=env,
        binds=binds,
    )
    assert "rootfs: cannot enter" not in run.stderr, run.stderr
    after = _upper_state(upper)
    written = [p for p, s in after.items() if s[0] != "dir" and before.get(p) != s]
    files = classify(written, real_anchors(system.python, scenario.kind), [f"{home}/.cache"])
    return observation(run.returncode, run.stdout + run.stderr, files)


def test_rootfs_runner_enters_the_release_as_a_container(tmp_path: Path) -> None:
    """pivot_root, not chroot: the tester is uid 1000 and ``/`` is a mount point."""
    system = release("bookworm")
    run = system.run(
        ["sh", "-c", "id -u; python3 --version; grep -c ' / ' /proc/self/mountinfo; touch ~/x"],
        upper=tmp_path,
        uid=rootfs.TESTER_UID,
    )
    assert run.returncode == 0, run.stderr
    uid, version, root_mounts = run.stdout.split("\n")[:3]
    assert (uid, version.split(".")[:2]) == ("1000", ["Python 3", "11"])
    assert int(root_mounts) >= 1
    assert [c.path for c in rootfs.changes(tmp_path) if c.kind == "file"] == ["/home/tester/x"]
    assert not (system.path / "home/tester/x").exists()


@pytest.fixture(scope="module")
def inside_results(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The plugin's side for releases whose interpreter needs its own libc:
    every scenario through the fixtures, run once per release inside it."""
    cache: dict[str, dict[str, Any]] = {}

    def get(suite: str) -> dict[str, Any]:
        if suite not in cache:
            cache[suite] = _run_inside(release(suite), wheels, tmp_path_factory.mktemp(suite))
        return cache[suite]

    return get


def _run_inside(system: rootfs.Rootfs, wheels: Path, work: Path) -> dict[str, Any]:
    if not system.has_suite_venv:
        pytest.skip(f"{system.path}{rootfs.SUITE_VENV}: missing (made by .ci/rootfs)")
    binds = [
        rootfs.Bind(str(REPO / "pytest_installperm"), "/src/pytest_installperm"),
        rootfs.Bind(str(REPO / "tests"), "/src/tests"),
        rootfs.Bind(str(wheels / "py3"), "/wheels"),
    ]
    env = {**rootfs.default_env(0), "PYTHONPATH": "/src", "PYTHONDONTWRITEBYTECODE": "1"}
    run = system.run(
        [f"{rootfs.SUITE_VENV}/bin/python", "/src/tests/fidelity.py", system.suite, "/wheels"],
        upper=work,
        env=env,
        binds=binds,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    data: dict[str, Any] = json.loads(run.stdout)
    return data["results"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@pytest.mark.parametrize("suite", rootfs.SUITES)
def test_real_system_and_plugin_agree(
    suite: str,
    scenario: Scenario,
    installperm: InstallPerm,
    wheels: Path,
    inside_results: Any,
    tmp_path: Path,
) -> None:
    system = release(suite)
    real = observe_real(system, scenario, wheels, tmp_path)
    if suite in ON_HOST:
        python = system.path / "usr/bin" / f"python{system.python}"
        pip_wheels = list((wheels / "py39").glob("pip-*.whl")) if system.python == "3.9" else []
        plugin = observe_plugin(
            installperm,
            scenario,
            str(python),
            wheels / wheel_set(system.python) / DEMO,
            pip_wheels[0] if pip_wheels else None,
        )
    else:
        plugin = inside_results(suite)[scenario.name]
    assert plugin == real, (
        f"{suite} {scenario.name}: plugin and real system differ\n"
        f"real:   {json.dumps(real, indent=1)}\nplugin: {json.dumps(plugin, indent=1)}"
    )


def test_upper_state_sees_a_deletion(tmp_path: Path) -> None:
    """The overlay reports a removed file as a whiteout, not as nothing."""
    system = release("bookworm")
    run = system.run(["rm", "/etc/hostname"], upper=tmp_path)
    assert run.returncode == 0, run.stderr
    kinds = {c.path: c.kind for c in rootfs.changes(tmp_path)}
    assert kinds["/etc/hostname"] == "deleted"
    assert stat.S_ISREG(os.lstat(system.path / "etc/hostname").st_mode)


def test_fidelity_sees_a_user_scripts_path(
    installperm: InstallPerm, wheels: Path, tmp_path: Path
) -> None:
    """The comparison can fail: the old PATH (user scripts on it) silences pip's
    "not on PATH" warning, and that is the only difference from the real system."""
    system = release("bookworm")
    scenario = SCENARIOS[0]
    real = observe_real(system, scenario, wheels, tmp_path)
    python = system.path / "usr/bin" / f"python{system.python}"
    plugin = observe_plugin(
        installperm,
        scenario,
        str(python),
        wheels / "py3" / DEMO,
        None,
        path=("system-scripts", "user-scripts", "/usr/bin", "/bin"),
    )
    assert "not-on-path" in real["messages"]
    assert plugin["messages"] == [m for m in real["messages"] if m != "not-on-path"]
    assert {k: v for k, v in plugin.items() if k != "messages"} == {
        k: v for k, v in real.items() if k != "messages"
    }
