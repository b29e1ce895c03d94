"""The in-process mode: ``installperm_fakefs`` and its parity with the real world.

Three groups:

* the fixture itself: identity, the patched "where do I install?" answers,
  PEP 668, HOME, every pyfakefs trap of docs/design.md, layouts, ``call()``;
* parity: for each decision-table row that has an in-process meaning, pip's own
  ``decide_user_install`` (after its PEP 668 check, in pip's order) decides the
  same under ``installperm_fakefs`` as real pip 26.3 does in the subprocess
  mode; and an app's ``installer.install`` gets the same placement verdicts as
  pip in a subprocess, for the same wheel. Real pip runs once per row, shared
  by both checks (module-scoped);
* the example downstream project in ``examples/plugin_app``, run by pytester.
"""

from __future__ import annotations

import compileall
import importlib
import os
import shutil
import site
import sys
import sysconfig
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pip._internal.commands.install import decide_user_install, site_packages_writable
from pip._internal.exceptions import CommandError, ExternallyManagedEnvironment
from pip._internal.locations import get_scheme
from pip._internal.utils.misc import check_externally_managed
from pyfakefs.fake_filesystem_unittest import Patcher

from pytest_installperm import Environment, InstallPerm, PlacementError
from pytest_installperm.errors import FakefsError, RoleError
from pytest_installperm.fakefs import (
    FAKE_GID,
    FAKE_ROOT,
    FAKE_UID,
    FakeInstallPerm,
    measure_overhead,
)
from pytest_installperm.fixtures import get_session
from pytest_installperm.run import RunResult
from pytest_installperm.scenarios import Request, load_all
from pytest_installperm.wheels import MakeWheel

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugin_app"
XY = "{}.{}".format(*sys.version_info[:2])
#: The real interpreter's prefixes, read before any test patches them.
HOST_PREFIXES = frozenset({sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix)})


# ---------------------------------------------------------------------------
# the fixture
# ---------------------------------------------------------------------------


def test_identity_is_a_normal_user_even_as_root(installperm_fakefs):
    env = installperm_fakefs.system()
    assert (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) == (
        FAKE_UID,
        FAKE_UID,
        FAKE_GID,
        FAKE_GID,
    )
    # Root-owned and locked: the user cannot write, whoever runs the suite.
    with pytest.raises(PermissionError):
        (env.paths("system")["purelib"] / "x.py").write_text("")


def test_everything_is_put_back_after_close():
    before = (
        sys.prefix,
        sys.executable,
        site.USER_BASE,
        site.USER_SITE,
        site.ENABLE_USER_SITE,
        sysconfig.get_paths(),
        os.environ.get("HOME"),
        os.geteuid(),
    )
    factory = FakeInstallPerm()
    env = factory.system()
    during = (sys.prefix, sysconfig.get_paths()["purelib"], os.environ["HOME"])
    factory.close()
    after = (
        sys.prefix,
        sys.executable,
        site.USER_BASE,
        site.USER_SITE,
        site.ENABLE_USER_SITE,
        sysconfig.get_paths(),
        os.environ.get("HOME"),
        os.geteuid(),
    )
    assert during == (str(env.prefix), str(env.paths("system")["purelib"]), str(env.home))
    assert after == before
    assert Patcher.PATCHER is None
    assert not os.path.lexists(FAKE_ROOT)


def test_where_do_i_install_gets_fake_answers(installperm_fakefs):
    env = installperm_fakefs.system()
    user = env.paths("user")
    answers = {
        "sys.prefix": sys.prefix,
        "sys.executable": sys.executable,
        "sysconfig purelib": sysconfig.get_paths()["purelib"],
        "sysconfig user purelib": sysconfig.get_paths(
            scheme=sysconfig.get_preferred_scheme("user")
        )["purelib"],
        "site.getuserbase()": site.getuserbase(),
        "site.getusersitepackages()": site.getusersitepackages(),
        "pip get_scheme purelib": get_scheme("", user=False).purelib,
        "pip get_scheme user purelib": get_scheme("", user=True).purelib,
        "HOME": os.path.expanduser("~"),
    }
    assert answers == {
        "sys.prefix": str(env.prefix),
        "sys.executable": str(env.python),
        "sysconfig purelib": str(env.paths("system")["purelib"]),
        "sysconfig user purelib": str(user["purelib"]),
        "site.getuserbase()": str(env.userbase),
        "site.getusersitepackages()": str(user["purelib"]),
        "pip get_scheme purelib": str(env.paths("system")["purelib"]),
        "pip get_scheme user purelib": str(user["purelib"]),
        "HOME": str(env.home),
    }
    assert str(user["purelib"]) == f"{env.home}/.local/lib/python{XY}/site-packages"
    # No answer points back at the host interpreter.
    leaks = {
        k: v
        for k, v in sysconfig.get_config_vars().items()
        if isinstance(v, str) and any(h in v for h in HOST_PREFIXES)
    }
    assert leaks == {}


def test_pep668_marker(installperm_fakefs):
    managed = installperm_fakefs.system(locked=(), externally_managed=True)
    assert managed.call(check_externally_managed).exception.__class__ is (
        ExternallyManagedEnvironment
    )
    free = installperm_fakefs.system(locked=(), externally_managed=False)
    assert free.call(check_externally_managed).returncode == 0


@pytest.mark.parametrize("home", ["missing", "unwritable"])
def test_home_missing_or_unwritable(installperm_fakefs, home):
    env = installperm_fakefs.system(home=home)
    assert os.environ["HOME"] == str(env.home)
    assert os.path.isdir(env.home) is (home == "unwritable")
    result = env.call(os.makedirs, env.paths("user")["purelib"])
    assert result.returncode == 1
    assert "Permission denied" in result.stderr
    assert not result.changes


def test_preinstalled_wheels_are_root_owned_and_stay_untouched(
    installperm_fakefs, wheels, plugin_app
):
    old, new = wheels("demo", "0.9"), wheels("demo", "1.0")
    env = installperm_fakefs.system(locked=("system",), preinstalled=[old])
    dist_info = env.paths("system")["purelib"] / "demo-0.9.dist-info"
    assert os.stat(dist_info).st_uid == 0

    result = env.call(plugin_app[0].install_plugin, new)

    result.assert_installed(new, scheme="user")
    result.assert_untouched("system")
    assert (dist_info / "RECORD").exists()


def test_works_the_same_for_a_normal_user(unprivileged):
    """As a non-root uid the fixture gives the same world (root is not special)."""
    inner = unprivileged.runpytest("""
        import os

        from pip._internal.commands.install import decide_user_install

        def test_fallback(installperm_fakefs):
            real_uid = os.geteuid()
            env = installperm_fakefs.system(locked=("system",))
            assert real_uid != 0 and os.geteuid() == 1000
            result = env.call(decide_user_install, None)
            assert result.value is True, result.describe()
            assert "Defaulting to user installation" in result.stdout
    """)
    inner.assert_outcomes(passed=1)


# -- the pyfakefs traps -----------------------------------------------------


def test_trap_os_access_ignores_owner_in_plain_pyfakefs():
    """The trap exists: stock pyfakefs says a root-owned 0755 dir is writable."""
    with Patcher(allow_root_user=False) as patcher:
        assert patcher.fs is not None
        patcher.fs.create_dir("/site", perm_bits=0o755)
        patcher.fs.get_object("/site").st_uid = 0
        stock = os.access("/site", os.W_OK)
        with pytest.raises(PermissionError):
            open("/site/x", "w").close()
    assert stock is True


def test_os_access_agrees_with_what_a_write_does(installperm_fakefs):
    env = installperm_fakefs.system(locked=("system", "user"))
    dirs = [
        env.paths("system")["purelib"],
        env.paths("system")["scripts"],
        env.userbase,
        env.home,
        env.root / "work",
        env.root / "tmp",
        env.root / "stage",
        env.root,
    ]
    said, did = {}, {}
    for directory in dirs:
        said[directory] = os.access(directory, os.W_OK)
        try:
            (directory / "probe").write_text("")
            did[directory] = True
            (directory / "probe").unlink()
        except PermissionError:
            did[directory] = False
    assert said == did
    assert sorted(d.name for d, ok in did.items() if ok) == ["home", "tmp", "work"]


def test_byte_compiling_works_and_never_reaches_the_real_disk(installperm_fakefs):
    env = installperm_fakefs.system(locked=())
    module = env.paths("system")["purelib"] / "m.py"

    def write_and_compile() -> bool:
        module.write_text("x = 1\n")
        return bool(compileall.compile_file(str(module), quiet=2, optimize=0))

    result = env.call(write_and_compile)
    assert result.value is True, result.describe()
    pyc = module.parent / "__pycache__" / f"m.{sys.implementation.cache_tag}.pyc"
    assert pyc in result.changes.created
    assert pyc.read_bytes()[16:]  # header, then marshalled code
    installperm_fakefs.fs.pause()
    try:
        assert not os.path.lexists(FAKE_ROOT)
    finally:
        installperm_fakefs.fs.resume()


def test_real_directory_is_mapped_readable(installperm_fakefs, tmp_path):
    real = tmp_path / "data"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "a.txt").write_text("hi")
    real.chmod(0o700)  # a root-owned 0700 tree: lazy mapping hides it from a user
    installperm_fakefs.system()
    mapped = installperm_fakefs.add_real_directory(real)
    assert sorted(os.listdir(mapped)) == ["sub"]
    assert (mapped / "sub" / "a.txt").read_text() == "hi"
    with pytest.raises(PermissionError):
        (mapped / "new").write_text("")


def test_the_fs_fixture_conflict_is_an_error_naming_it(pytester):
    pytester.makepyfile(
        """
        def test_fs_first(fs, installperm_fakefs):
            pass

        def test_ours_first(installperm_fakefs, fs):
            pass
        """
    )
    # A subprocess: pyfakefs's first Patcher scans every loaded module, and this
    # process has many more (pip) than a fresh one.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*FakefsError: installperm_fakefs cannot be combined with pyfakefs's 'fs' fixture*"] * 2
    )


def test_an_active_patcher_is_refused():
    with Patcher(), pytest.raises(FakefsError, match="already active"):
        FakeInstallPerm()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"python": "/usr/bin/python3"}, "cannot switch to another one"),
        ({"lock_mode": "readonly-fs"}, "EROFS"),
        ({"backend": "privdrop"}, "only backend is 'fakefs'"),
        ({"layout": "plan9"}, "unknown layout"),
    ],
)
def test_subprocess_only_arguments_are_refused(installperm_fakefs, kwargs, message):
    with pytest.raises((FakefsError, RoleError), match=message):
        installperm_fakefs.system(**kwargs)


def test_run_and_pip_are_refused(installperm_fakefs):
    env = installperm_fakefs.system()
    with pytest.raises(FakefsError, match="child process does not see the fake filesystem"):
        env.pip("install", "x")
    with pytest.raises(FakefsError, match=r"env\.sandbox: installperm_fakefs environments"):
        env.sandbox  # noqa: B018


def test_one_environment_and_result_type_for_both_worlds(installperm_fakefs):
    env = installperm_fakefs.system()
    result = env.call(len, "abc")
    assert type(env) is Environment and type(result) is RunResult
    assert (result.returncode, result.value, result.exception) == (0, 3, None)
    assert env.backend == "fakefs" and env.world.owner() == (FAKE_UID, FAKE_GID)
    # The fake tree holds the lock plan the real backends apply.
    plan = env.spec.plan(env.roles, env.root)
    owners = {top: os.stat(top).st_uid for top in plan.grant}
    assert owners == dict.fromkeys(plan.grant, FAKE_UID)
    assert {os.stat(top).st_uid for top, _ in plan.deny} == {0}


# -- layouts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "user_site", "scripts"),
    [
        ("posix", f".local/lib/python{XY}/site-packages", ".local/bin"),
        (
            "macos-framework",
            f"Library/Python/{XY}/lib/python/site-packages",
            f"Library/Python/{XY}/bin",
        ),
        (
            "windows",
            "AppData/Roaming/Python/Python{nodot}/site-packages",
            "AppData/Roaming/Python/Python{nodot}/Scripts",
        ),
    ],
)
def test_layouts_user_scheme(installperm_fakefs, layout, user_site, scripts):
    env = installperm_fakefs.system(layout=layout)
    nodot = XY.replace(".", "")
    home = env.home
    assert env.paths("user")["purelib"] == home / user_site.format(nodot=nodot)
    assert env.paths("user")["scripts"] == home / scripts.format(nodot=nodot)
    assert site.getusersitepackages() == str(home / user_site.format(nodot=nodot))
    assert get_scheme("", user=True).purelib == str(home / user_site.format(nodot=nodot))
    assert os.name == "posix"  # documented: pyfakefs cannot change it


# -- call() -------------------------------------------------------------------


def test_call_reports_status_output_and_changes_by_role(installperm_fakefs):
    env = installperm_fakefs.system(locked=("system",))

    def works() -> str:
        print("to stdout")
        (env.home / "note").write_text("x")
        (env.root / "tmp" / "t").write_text("x")
        return "done"

    ok = env.call(works)
    assert (ok.returncode, ok.value, ok.stdout) == (0, "done", "to stdout\n")
    assert ok.changes.under("home").created == {env.home / "note"}
    assert ok.outside == frozenset()

    def fails() -> None:
        (env.paths("system")["scripts"] / "tool").write_text("x")

    bad = env.call(fails)
    assert bad.returncode == 1
    assert bad.stderr.startswith("PermissionError: [Errno 13] Permission denied")
    assert "exit status 1 (backend fakefs)" in bad.describe()
    assert env.call(sys.exit, 3).returncode == 3


def test_writes_outside_allowed_roles_are_reported(installperm_fakefs):
    env = installperm_fakefs.system(locked=("system",))
    stray = env.paths("system")["purelib"] / "stray.py"

    def escalates() -> None:
        with installperm_fakefs.as_root():  # what a setuid helper or a bug would do
            stray.write_text("")

    result = env.call(escalates)
    assert result.outside == {stray}
    with pytest.raises(PlacementError, match="was touched"):
        result.assert_untouched("system")


def test_overhead_measurement_runs():
    numbers = measure_overhead(repeat=3)
    assert set(numbers) == {
        "repeat",
        "plain_ms",
        "fakefs_ms",
        "overhead_ms",
        "call_ms",
        "plain_cpu_ms",
        "fakefs_cpu_ms",
        "overhead_cpu_ms",
        "call_cpu_ms",
    }
    assert numbers["plain_ms"] > 0 and numbers["fakefs_ms"] > 0 and numbers["call_ms"] > 0
    assert Patcher.PATCHER is None  # it cleans up after itself


# ---------------------------------------------------------------------------
# parity with real pip
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One built-in scenario (or decision-table row) with an in-process meaning."""

    name: str
    venv: bool = False
    env: Mapping[str, Any] = field(default_factory=dict)
    #: (name, version) of wheels installed as root before the lock.
    preinstalled: tuple[tuple[str, str], ...] = ()
    wheel: tuple[str, str, bool] = ("demo", "1.0", True)
    #: The scenario's own request: flags, PIP_USER, directory options.
    request: Request = field(default_factory=Request)

    @property
    def directory_option(self) -> str | None:
        for name in ("prefix", "target", "root"):
            if getattr(self.request, name):
                return name
        return None

    @property
    def plain(self) -> bool:
        """A system interpreter, no options, nothing preinstalled, no PEP 668:
        where an app's own installer and pip should place files alike."""
        return (
            not self.venv
            and self.request.user is None
            and not self.directory_option
            and not self.request.upgrade
            and not self.request.break_system_packages
            and not self.preinstalled
            and not self.env.get("externally_managed")
        )


def _from_scenario(scenario: Any) -> Case | None:
    """A scenario as a Case, or None when it has no in-process meaning (EROFS)."""
    spec, request = scenario.environment, scenario.request
    if spec.lock_mode != "deny":
        return None
    env: dict[str, Any] = {
        "locked": tuple(spec.locked),
        "home": spec.home,
        "user_site": spec.user_site,
    }
    if spec.kind == "venv":
        env["system_site_packages"] = spec.system_site_packages
    else:
        env["externally_managed"] = spec.externally_managed
    return Case(
        scenario.name,
        venv=spec.kind == "venv",
        env=env,
        preinstalled=tuple(scenario.preinstalled()),
        wheel=(scenario.wheel.name, scenario.wheel.version, scenario.wheel.console_scripts),
        request=request,
    )


def load_cases() -> list[Case]:
    """Every built-in scenario with an in-process meaning (all but EROFS)."""
    return [c for c in map(_from_scenario, load_all()) if c is not None]


CASES = load_cases()
#: Cases where installer and pip legitimately differ (write order), see below.
INSTALLER_WRITES_SCRIPTS_FIRST = frozenset({"scripts-only-lock"})


def pip_decides(
    use_user_site: bool | None,
    *,
    prefix_path: str | None = None,
    target_dir: str | None = None,
    root_path: str | None = None,
    break_system_packages: bool = False,
) -> bool:
    """What pip 26.3's install command decides, in its order: refusals, PEP 668, user."""
    if use_user_site and target_dir is not None:
        raise CommandError("Can not combine '--user' and '--target'")
    if not (prefix_path or target_dir or root_path or break_system_packages):
        check_externally_managed()
    return decide_user_install(
        use_user_site, prefix_path=prefix_path, target_dir=target_dir, root_path=root_path
    )


def fake_decision(result: Any) -> str:
    if result.returncode == 0:
        return "user" if result.value else "system"
    if isinstance(result.exception, ExternallyManagedEnvironment):
        return "error:pep668"
    if "'--user'" in result.stderr:
        return "error:user"
    return f"error:{type(result.exception).__name__}"


def real_decision(result: RunResult, case: Case) -> str:
    """pip's decision, from its own words; cross-checked with where files went."""
    out = result.output
    if "externally-managed-environment" in out:
        return "error:pep668"
    if "Can not perform a '--user' install" in out or "Can not combine" in out:
        return "error:user"
    fell_back = "Defaulting to user installation" in out
    decided = "user" if (fell_back or case.request.user) else "system"
    if result.returncode == 0:
        # Where the new dist-info is (the interpreter's own stdlib caches do not count).
        landed = {
            result.environment.role_of(p)
            for p in result.changes.created
            if p.name.endswith(".dist-info")
        }
        assert landed == {"work" if case.directory_option else decided}, result.describe()
    return decided


VERDICTS: Mapping[str, Callable[[Any, Path], None]] = {
    "installed(user)": lambda r, w: r.assert_installed(w, scheme="user"),
    "installed(system)": lambda r, w: r.assert_installed(w, scheme="system"),
    "not_installed": lambda r, w: r.assert_not_installed(w),
    "untouched(system)": lambda r, w: r.assert_untouched("system"),
    "untouched(user)": lambda r, w: r.assert_untouched("user"),
    "no_residue": lambda r, w: r.assert_no_residue(),
}


def verdicts(result: Any, wheel: Path, why: dict[str, str] | None = None) -> dict[str, bool]:
    """Which verdicts pass for ``result``: the comparison is of the whole vector.

    ``why`` collects each failing verdict's message.
    """
    outcome = {}
    for name, verdict in VERDICTS.items():
        try:
            verdict(result, wheel)
            outcome[name] = True
        except PlacementError as exc:
            outcome[name] = False
            if why is not None:
                why[name] = str(exc)[:2000]
    return outcome


@dataclass
class Real:
    decision: str
    describe: str
    #: Verdicts on real pip's run, and on the example app's installer run.
    pip_verdicts: dict[str, bool] = field(default_factory=dict)
    app_verdicts: dict[str, bool] = field(default_factory=dict)
    app_describe: str = ""
    why: dict[str, str] = field(default_factory=dict)


#: The example app's installer, run by a real relocated interpreter as the
#: dropped uid: the same code the in-process test calls.
APP_MAIN = "import sys; from plugin_app import install_plugin; install_plugin(sys.argv[1])"


@pytest.fixture(scope="module")
def plugin_app(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Path]]:
    """The example app imported here (before pyfakefs starts), and a readable copy
    of it with ``installer`` for a child that runs as another uid."""
    import installer

    site_dir = get_session(request.config).root.new_dir("app-site-")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(installer.__file__).parent, site_dir / "installer", ignore=ignore)
    shutil.copytree(EXAMPLE / "plugin_app", site_dir / "plugin_app", ignore=ignore)
    for path in [site_dir, *site_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLE))
        module = importlib.import_module("plugin_app")
        yield module, site_dir
        for name in [n for n in sys.modules if n == "plugin_app" or n.startswith("plugin_app.")]:
            mp.delitem(sys.modules, name)


class Wheels:
    """The wheels the cases need, built once into a directory any uid can read."""

    def __init__(self, make: MakeWheel) -> None:
        self.make = make
        self.built: dict[tuple[str, str, bool], Path] = {}

    def __call__(self, name: str, version: str, console_scripts: bool = True) -> Path:
        key = (name, version, console_scripts)
        if key not in self.built:
            module = name.replace("-", "_")
            self.built[key] = self.make(
                name, version, console_scripts={name: f"{module}:main"} if console_scripts else None
            )
        return self.built[key]

    def of(self, case: Case) -> Path:
        return self(*case.wheel)

    def preinstalled(self, case: Case) -> list[Path]:
        return [self(name, version, case.wheel[2]) for name, version in case.preinstalled]


@pytest.fixture(scope="module")
def wheels(request: pytest.FixtureRequest) -> Wheels:
    return Wheels(MakeWheel(get_session(request.config).root.new_dir("wheels-")))


def pip_request(case: Case, work: Path) -> tuple[list[str], dict[str, str]]:
    """pip's flags and environment for a case; directories go into ``work``."""
    args, env = [], {}
    if case.request.user is not None:
        if case.request.user_via == "env":
            env["PIP_USER"] = "1" if case.request.user else "0"
        else:
            args.append("--user" if case.request.user else "--no-user")
    option = case.directory_option
    if option:
        args += [f"--{option}", str(work / option)]
    if case.request.break_system_packages:
        args.append("--break-system-packages")
    if case.request.upgrade:
        args.append("--upgrade")
    return args, env


def build_env(factory: InstallPerm | FakeInstallPerm, case: Case, wheels: Wheels) -> Any:
    """The case's environment, real or fake: both factories take the same arguments."""
    kwargs = {**case.env, "preinstalled": wheels.preinstalled(case)}
    return factory.venv(**kwargs) if case.venv else factory.system(**kwargs)


@pytest.fixture(scope="module")
def real_runs(
    request: pytest.FixtureRequest, wheels: Wheels, plugin_app: tuple[Any, Path]
) -> Iterator[dict[str, Real]]:
    """Real pip 26.3 once per case, and the example app for the plain cases,
    each in its own environment of the subprocess mode."""
    factory = InstallPerm(get_session(request.config))
    found: dict[str, Real] = {}
    try:
        # Children are independent: run them side by side (pip is ~1 s each).
        jobs: dict[tuple[str, str], Callable[[], RunResult]] = {}
        for case in CASES:
            env = build_env(factory, case, wheels)
            args, extra = pip_request(case, env.sandbox.work)
            jobs[case.name, "pip"] = partial(
                env.pip, "install", "--no-index", *args, wheels.of(case), env=extra
            )
            if case.plain:
                app_env = build_env(factory, case, wheels)
                # -B: the interpreter's own stdlib caches are not the app's writes.
                argv = [app_env.python, "-B", "-c", APP_MAIN, wheels.of(case)]
                jobs[case.name, "app"] = partial(
                    app_env.run, argv, env={"PYTHONPATH": str(plugin_app[1])}
                )
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            done = dict(zip(jobs, pool.map(lambda job: job(), jobs.values()), strict=True))
        for case in CASES:
            result = done[case.name, "pip"]
            real = found[case.name] = Real(real_decision(result, case), result.describe())
            if case.plain:
                app = done[case.name, "app"]
                real.pip_verdicts = verdicts(result, wheels.of(case))
                real.app_verdicts = verdicts(app, wheels.of(case), real.why)
                real.app_describe = app.describe()
        yield found
    finally:
        factory.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_pip_decides_the_same_in_process(case, real_runs, wheels, installperm_fakefs):
    env = build_env(installperm_fakefs, case, wheels)
    directory = str(env.root / "work" / case.directory_option) if case.directory_option else None
    result = env.call(
        pip_decides,
        case.request.user,
        prefix_path=directory if case.request.prefix else None,
        target_dir=directory if case.request.target else None,
        root_path=directory if case.request.root else None,
        break_system_packages=case.request.break_system_packages,
    )
    real = real_runs[case.name]
    assert fake_decision(result) == real.decision, (
        f"in-process {fake_decision(result)}, real pip {real.decision}\n"
        f"{result.describe()}\n{real.describe}"
    )
    if (
        real.decision in ("user", "system")
        and case.request.user is None
        and not case.directory_option
    ):
        # The writability check pip called agrees with the lock.
        writable = env.call(site_packages_writable, root=None, isolated=False).value
        assert writable is ("system" not in case.env["locked"]), result.describe()


def test_parity_cases_cover_every_kind_of_decision(real_runs):
    """Guard against a vacuous parity: the real decisions span the table."""
    kinds = {real.decision for real in real_runs.values()}
    assert {"user", "system", "error:user", "error:pep668"} <= kinds, kinds
    assert any(case.plain for case in CASES)


PLAIN = [c for c in CASES if c.plain]


@pytest.mark.parametrize("case", PLAIN, ids=[c.name for c in PLAIN])
def test_installer_in_process_gets_the_same_verdicts_as_a_subprocess(
    case, real_runs, wheels, plugin_app, installperm_fakefs
):
    """The example app's ``installer.install`` (it picks the scheme itself),
    in-process on the fake tree versus the same code in a real child process;
    and versus real pip where pip and installer write in the same order."""
    env = build_env(installperm_fakefs, case, wheels)
    wheel = wheels.of(case)
    result = env.call(plugin_app[0].install_plugin, wheel)
    fake = verdicts(result, wheel)
    real = real_runs[case.name]
    assert fake == real.app_verdicts, (
        f"verdicts differ: in-process {fake}\nsubprocess {real.app_verdicts}"
        f"\n{result.describe()}\n{real.app_describe}\n{real.why}"
    )
    assert any(fake.values())
    if case.name in INSTALLER_WRITES_SCRIPTS_FIRST:
        # installer writes entry-point launchers before the files, pip after:
        # a scripts-only lock stops installer before any write, pip midway.
        assert (fake["no_residue"], real.pip_verdicts["no_residue"]) == (True, False)
    else:
        assert fake == real.pip_verdicts, f"in-process {fake}\nreal pip {real.pip_verdicts}"


# ---------------------------------------------------------------------------
# the example downstream project
# ---------------------------------------------------------------------------


def test_example_plugin_app_suite_passes(pytester):
    result = pytester.runpytest_subprocess(
        str(EXAMPLE / "tests"),
        "--rootdir",
        str(EXAMPLE),
        "-c",
        str(EXAMPLE / "pyproject.toml"),
        timeout=300,
    )
    result.assert_outcomes(passed=6)
