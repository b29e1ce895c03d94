"""In-place mode: the real interpreter at its real path, the sandbox bound
over its system scheme inside the child's mount namespace only."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from conftest import _closure

from pytest_installperm import InstallPerm
from pytest_installperm.environment import Environment
from pytest_installperm.errors import FakefsError, InterpreterError, PlacementError
from pytest_installperm.fixtures import get_session
from pytest_installperm.inplace import auto_refusal
from pytest_installperm.inplace import layout as inplace_layout
from pytest_installperm.interpreter import BaseInterpreter, running_base
from pytest_installperm.roles import is_under

FALLBACK = "Defaulting to user installation because normal site-packages is not writeable"
DEBIAN = Path("/usr/bin/python3.11")
#: In place, nothing locked; a PEP 668 marker (Debian's) is not what these tests are about.
UNLOCKED = {"python": running_base(), "mode": "in-place", "locked": (), "externally_managed": False}
PROBE = (
    "import json, sys, sysconfig; print(json.dumps({'prefix': sys.prefix, "
    "'executable': sys.executable, 'purelib': sysconfig.get_paths()['purelib'], "
    "'scripts': sysconfig.get_paths()['scripts'], "
    "'LIBDIR': sysconfig.get_config_var('LIBDIR'), 'BINDIR': sysconfig.get_config_var('BINDIR')}))"
)


def probe(env: Environment) -> dict[str, str]:
    run = env.run([env.python, "-c", PROBE])
    assert run.returncode == 0, run.describe()
    found: dict[str, str] = json.loads(run.stdout)
    return found


def listing(path: str | Path) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes below ``path``, read by us, not by change tracking."""
    found = []
    for top, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(top, name))
            found.append((os.path.join(top, name), st.st_size, st.st_mtime_ns))
    return sorted(found)


def test_debian_interpreter_in_its_real_place(installperm: InstallPerm, demo_wheel: Path) -> None:
    if not DEBIAN.exists():
        pytest.skip(f"{DEBIAN} (Debian's interpreter) is not here")
    real_site = "/usr/local/lib/python3.11/dist-packages"
    host_site, host_bin = listing(real_site), listing("/usr/local/bin")
    env = installperm.system(python=DEBIAN, mode="in-place")
    assert env.python == DEBIAN
    assert env.mode.name == "in-place"
    seen = probe(env)
    assert seen["prefix"] == "/usr"
    assert seen["purelib"] == real_site
    assert env.seen_as(env.paths("system")["purelib"]) == Path(real_site)
    result = env.pip("install", "--break-system-packages", demo_wheel)
    assert FALLBACK in result.stdout, result.describe()
    # The child's PATH has the real /usr/local/bin (the sandbox's, bound
    # there), not the user's scripts directory: pip's real warning.
    assert f"installed in '{env.paths('user')['scripts']}' which is not on PATH" in result.stderr
    result.assert_installed(demo_wheel, scheme="user")
    result.assert_untouched("system")
    assert listing(real_site) == host_site
    assert listing("/usr/local/bin") == host_bin


def test_uv_denial_names_the_real_site(installperm: InstallPerm, demo_wheel: Path) -> None:
    """The original report's message, with the path its users see."""
    env = installperm.system(python=running_base(), mode="in-place", externally_managed=False)
    real_site = probe(env)["purelib"]
    assert real_site.startswith(sys.base_prefix)
    assert env.seen_as(env.paths("system")["purelib"]) == Path(real_site)
    assert env.in_sandbox(Path(real_site) / "demo") == env.paths("system")["purelib"] / "demo"
    uv = env.tool("uv")
    result = env.run([uv, "pip", "install", "--python", env.python, "--system", demo_wheel])
    assert result.returncode != 0
    denied = rf"failed to create directory `{re.escape(real_site)}/demo[^`]*`: Permission denied"
    assert re.search(denied, result.stderr), result.describe()
    result.assert_not_installed(demo_wheel)
    result.assert_no_residue()


def test_unlocked_install_lands_in_the_sandbox_with_real_paths(
    installperm: InstallPerm, demo_wheel: Path
) -> None:
    """RECORD and shebangs name the real paths; the files are the sandbox's."""
    env = installperm.system(**UNLOCKED)
    result = env.pip("install", demo_wheel)
    assert result.returncode == 0, result.describe()
    result.assert_installed(demo_wheel, scheme="system")
    site = env.paths("system")["purelib"]
    record = (site / "demo-1.0.dist-info" / "RECORD").read_text()
    assert "demo/__init__.py" in record
    script = env.paths("system")["scripts"] / "demo-cli"
    assert script.read_text().startswith(f"#!{running_base()}"), script.read_text()[:200]
    assert not (Path(str(env.seen_as(site))) / "demo").exists()  # not on the host


def test_config_variables_are_the_real_ones(installperm: InstallPerm) -> None:
    """A 0700 /root (pyenv) is traversable inside the namespace only."""
    base = running_base()
    root_mode = os.stat("/root").st_mode
    env = installperm.system(python=base, mode="in-place")
    seen = probe(env)
    assert seen["executable"] == str(base)
    assert seen["prefix"] == sys.base_prefix
    assert seen["LIBDIR"] == sysconfig.get_config_var("LIBDIR")
    assert seen["BINDIR"] == sysconfig.get_config_var("BINDIR")
    assert f"mode: in-place ({base} at its real path" in env.describe()
    assert os.stat("/root").st_mode == root_mode  # the tmpfs was the child's only


@pytest.mark.parametrize("mode", ["in-place", "relocated"])
def test_virtualenv_on_a_pyenv_base_under_privdrop(installperm: InstallPerm, mode: str) -> None:
    """virtualenv (pdm's and hatch's venv maker) reads LIBDIR and friends: in
    place they are real and readable by the dropped uid; relocated, they name
    the original under the 0700 /root."""
    env = installperm.system(python=running_base(), locked=(), mode=mode)
    if env.backend != "privdrop":
        pytest.skip(f"backend {env.backend}: this is about a dropped uid")
    site = env.sandbox.work / "virtualenv-site"
    for dist in _closure(("virtualenv",)):
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if str(file).startswith("..") or "__pycache__" in file.parts or not source.is_file():
                continue
            (site / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, site / file)
    for path in [site, *site.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    env.snapshot().update()  # our copy, not the child's doing
    target = env.home / "venv"
    result = env.run(
        [env.python, "-m", "virtualenv", "--no-seed", "--no-periodic-update", target],
        env={"PYTHONPATH": str(site)},
    )
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    if mode == "relocated":
        if not libdir.startswith("/root/"):
            pytest.skip(f"LIBDIR {libdir}: relocation fails only when it is under the 0700 /root")
        assert result.returncode != 0, result.describe()
        assert "PermissionError: [Errno 13] Permission denied" in result.output, result.describe()
        return
    assert result.returncode == 0, result.describe()
    made = env.run([target / "bin" / "python", "-c", "import sys; print(sys.prefix)"])
    assert made.stdout.strip() == str(target), made.describe()
    inside = env.run([target / "bin" / "python", "-m", "pip", "--version"])
    assert inside.returncode != 0  # --no-seed: no pip in it, as asked


def test_venv_is_relocated_and_says_why(
    installperm: InstallPerm, request: pytest.FixtureRequest
) -> None:
    env = installperm.venv()
    assert env.mode.name == "relocated"
    if get_session(request.config).mode == "relocated":
        assert env.mode.reason == "the session's mode (relocated)"
    else:
        assert (
            env.mode.reason
            == "in place is not possible: venv() is always built on a relocated copy"
        )
        assert "mode: relocated (in place is not possible:" in env.describe()
        assert env.run(["/bin/true"]).describe().count("\n  mode: relocated (in place") == 1


@pytest.mark.parametrize("python", [running_base(), DEBIAN], ids=["running", "debian"])
@pytest.mark.parametrize("marker", [True, False])
def test_pep668_marker_laid_over_the_real_stdlib(
    installperm: InstallPerm, demo_wheel: Path, python: Path, marker: bool
) -> None:
    """externally_managed= that differs from the real marker: an overlay on
    the stdlib in the child's namespace (a whiteout hides it, as root)."""
    if not python.exists():
        pytest.skip(f"{python} is not here")
    real = Path("/usr/lib/python3.11" if python == DEBIAN else sysconfig.get_path("stdlib"))
    before = (real / "EXTERNALLY-MANAGED").exists()
    env = installperm.system(python=python, mode="in-place", externally_managed=marker)
    assert env.mode.name == "in-place", env.describe()
    result = env.pip("install", demo_wheel)
    refused = "externally-managed-environment" in result.output
    assert refused == marker, result.describe()
    if not marker:
        result.assert_installed(demo_wheel, scheme="user")
    assert (real / "EXTERNALLY-MANAGED").exists() == before  # the host's stdlib


def test_forced_in_place_that_cannot_be_had_is_a_skip(installperm: InstallPerm) -> None:
    """A base whose real site-packages is gone has nothing to bind over."""
    other = installperm.system(mode="relocated", locked=())
    shutil.rmtree(other.paths("system")["purelib"])
    if other.paths("system")["data"] != other.prefix:  # Debian's prefix/local holds purelib
        shutil.rmtree(other.paths("system")["data"])
    with pytest.raises(pytest.skip.Exception) as skipped:
        installperm.system(python=other.python, mode="in-place")
    message = str(skipped.value)
    assert f"mode in-place for {other.python} is not possible here" in message
    assert f"the real purelib directory {other.paths('system')['purelib']}" in message
    env = installperm.system(python=other.python, mode="auto")
    assert env.mode.name == "relocated"
    assert env.mode.reason.startswith("in place is not possible: the real purelib directory")


def test_relocated_when_asked(installperm: InstallPerm) -> None:
    env = installperm.system(mode="relocated")
    assert env.mode.name == "relocated"
    assert env.mode.reason == "asked for"
    assert env.python != running_base()
    assert env.seen_as(env.paths("system")["purelib"]) == env.paths("system")["purelib"]


def test_unknown_mode_is_a_value_error(installperm: InstallPerm) -> None:
    with pytest.raises(
        ValueError, match="mode='inplace': must be one of auto, in-place, relocated"
    ):
        installperm.system(mode="inplace")


def test_a_base_neither_mode_can_use_names_path_and_mode(
    installperm: InstallPerm, tmp_path: Path
) -> None:
    missing = tmp_path / "python3.99"
    with pytest.raises(
        InterpreterError,
        match=rf"{re.escape(str(missing))}: does not exist "
        r"\(mode in-place: neither mode can use it\)",
    ):
        installperm.system(python=missing, mode="in-place")


def test_fakefs_refuses_mode_and_names_its_own(installperm_fakefs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FakefsError, match=r"mode='in-place'.*no child process"):
        installperm_fakefs.system(mode="in-place")
    env = installperm_fakefs.system()
    assert env.mode.name == "in-process"
    assert "mode: in-process" in env.describe()


def test_in_place_as_a_normal_user_in_a_user_namespace(unprivileged) -> None:  # type: ignore[no-untyped-def]
    """As a normal user the binds are made in an unprivileged user namespace."""
    inner = unprivileged.runpytest(
        f"""
        import json, os, sys
        from pathlib import Path

        FALLBACK = {FALLBACK!r}

        def test_user_namespace(installperm, make_wheel):
            assert os.geteuid() != 0
            wheel = make_wheel("demo", purelib={{"demo/__init__.py": ""}})
            env = installperm.system(mode="in-place")
            assert env.mode.name == "in-place", env.describe()
            assert "bind mounts made in a user namespace" in env.mode.reason
            real = env.seen_as(env.paths("system")["purelib"])
            before = sorted(os.listdir(real))
            code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
            seen = env.run([env.python, "-c", code])
            assert seen.stdout.strip() == str(real), seen.describe()
            # (a PEP 668 marker, Debian's, cannot be hidden without root)
            result = env.pip("install", "--break-system-packages", wheel)
            assert FALLBACK in result.stdout, result.describe()
            result.assert_installed(wheel, scheme="user")
            result.assert_untouched("system")
            assert sorted(os.listdir(real)) == before
        """
    )
    assert inner.outcomes() == {"passed": 1}, inner.stdout + inner.stderr


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as info:
        return {line.split()[4] for line in info}


def _top(path: Path) -> tuple[list[str], int]:
    """A directory's entries and its mtime, read by us, not by change tracking."""
    return sorted(os.listdir(path)), os.stat(path).st_mtime_ns


def test_the_host_sees_nothing_of_an_in_place_install(
    installperm: InstallPerm, demo_wheel: Path
) -> None:
    """As root, nothing locked: pip writes the system site and scripts as the
    child sees them (the real paths), and the host's real directories stay as
    they were, with no mount left in its namespace."""
    if os.geteuid() != 0:
        pytest.skip("as root: a root parent could write the real directories")
    env = installperm.system(**UNLOCKED)
    real_site = env.seen_as(env.paths("system")["purelib"])
    real_bin = env.seen_as(env.paths("system")["scripts"])
    assert real_site != env.paths("system")["purelib"] and real_site.is_dir()
    before = _top(real_site), _top(real_bin), _mount_points()
    result = env.pip("install", demo_wheel)
    assert result.returncode == 0, result.describe()
    result.assert_installed(demo_wheel, scheme="system")
    seen = env.run([env.python, "-c", "import demo, os; print(os.path.dirname(demo.__file__))"])
    assert seen.stdout.strip() == str(real_site / "demo"), seen.describe()
    assert (_top(real_site), _top(real_bin), _mount_points()) == before
    assert not (real_site / "demo").exists() and not (real_bin / "demo-cli").exists()


def test_path_mapping_is_lexical_and_never_follows_what_the_child_wrote(
    installperm: InstallPerm, demo_wheel: Path
) -> None:
    """The child plants links at the real paths; the parent maps and judges
    them as names, never through them."""
    env = installperm.system(**UNLOCKED)
    site = env.paths("system")["purelib"]
    real = env.seen_as(site)
    installed = env.pip("install", demo_wheel)
    assert installed.returncode == 0, installed.describe()
    code = (
        "import os, shutil, sys; site = sys.argv[1]; "
        "os.symlink('/etc', os.path.join(site, 'escape')); "
        "shutil.rmtree(os.path.join(site, 'demo')); os.symlink('/etc', os.path.join(site, 'demo'))"
    )
    planted = env.run([env.python, "-c", code, str(real)])  # the real path, as the child sees it
    assert planted.returncode == 0, planted.describe()
    assert (site / "escape").is_symlink() and (site / "demo").is_symlink()  # in the sandbox
    assert not os.path.lexists(real / "escape")  # not on the host
    mapped = env.in_sandbox(real / "escape" / "shadow")
    assert mapped == site / "escape" / "shadow"  # lexically: not /etc/shadow
    assert env.seen_as(mapped) == real / "escape" / "shadow"
    assert env.in_sandbox(Path("/etc/passwd")) == Path("/etc/passwd")  # not bound: as it is
    with pytest.raises(PlacementError) as caught:
        installed.assert_installed(demo_wheel, scheme="system")
    message = str(caught.value)
    # The package directory is a link to /etc now: its files are missing, not read there.
    assert re.search(r"-packages/demo/__init__\.py +missing", message), message
    assert "root:" not in message  # nothing of /etc/passwd or /etc/shadow


def test_the_sessions_mode_comes_from_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_mode(installperm):
            env = installperm.system()
            assert env.mode.name == "relocated"
            assert env.mode.reason == "the session's mode (relocated)"
        """
    )
    pytester.runpytest_subprocess("--installperm-mode=relocated").assert_outcomes(passed=1)
    refused = pytester.runpytest_subprocess("--installperm-mode=inplace")
    refused.stderr.fnmatch_lines(
        ["*--installperm-mode: 'inplace' is not a mode; allowed: auto, in-place, relocated*"]
    )


def _install_tree(
    root: Path, *, data: str, headers: str, with_header: bool | None
) -> dict[str, object]:
    """A CPython's files laid out below ``root`` as a real install would have
    them; returns layout()'s arguments for it (the real scheme as given)."""
    prefix = root / ("opt/py" if data == "prefix" else "usr")
    stdlib = prefix / "lib/python3.11"
    executable = prefix / "bin/python3.11"
    for directory in (stdlib, executable.parent, root / "usr/local"):
        directory.mkdir(parents=True, exist_ok=True)
    (stdlib / "os.py").write_text("")
    executable.write_text("")
    include = root / headers
    if with_header is not None:  # None: the directory does not exist
        include.mkdir(parents=True)
    if with_header:
        (include / "Python.h").write_text("")
    system = prefix if data == "prefix" else root / "usr/local"
    site = system / "lib/python3.11/site-packages"
    site.mkdir(parents=True)
    real = {
        "data": system,
        "purelib": site,
        "platlib": site,
        "scripts": system / "bin",
        "headers": include,
    }
    (system / "bin").mkdir(exist_ok=True)
    base = BaseInterpreter(executable, prefix, stdlib, "3.11", None)
    return {"base": base, "real": real}


@pytest.mark.parametrize(
    ("layout", "left"),
    [
        # pyenv: the data directory is the prefix, which holds the interpreter.
        ({"data": "prefix", "headers": "opt/py/include/python3.11", "with_header": True}, "data"),
        # Debian 12 with python3.11-dev: /usr/include/python3.11 holds Python.h.
        ({"data": "local", "headers": "usr/include/python3.11", "with_header": True}, "headers"),
        # Debian without the headers package: the real headers directory is
        # there but empty, so it is replaced like the rest.
        ({"data": "local", "headers": "usr/include/python3.11", "with_header": False}, None),
        # Debian without python3-dev: no /usr/include/python3.X to bind over.
        ({"data": "local", "headers": "usr/include/python3.11", "with_header": None}, "headers"),
        # Headers below /usr/local: covered by the data directory's bind.
        ({"data": "local", "headers": "usr/local/include/python3.11", "with_header": True}, None),
    ],
    ids=["pyenv", "debian-dev", "debian", "debian-no-headers", "headers-in-data"],
)
def test_auto_goes_in_place_only_where_every_scheme_directory_is_replaced(
    tmp_path: Path, layout: dict[str, Any], left: str | None
) -> None:
    args = _install_tree(tmp_path / "root", **layout)
    base, real = args["base"], args["real"]
    assert isinstance(base, BaseInterpreter) and isinstance(real, dict)
    found = inplace_layout(base, real)  # what Session.layouts keeps per base
    assert not isinstance(found, str), found
    refusal = auto_refusal(found)
    if left is None:
        assert refusal is None, refusal
        assert found.left_real == ()
        assert all(any(is_under(p, t) for t in found.targets) for p in real.values()), found
    else:
        assert refusal is not None
        why = "holds" if real[left].is_dir() else "is not a directory"
        assert f"scheme's {left} directory {real[left]} {why}" in refusal, refusal
        assert not any(is_under(real[left], t) for t in found.targets), found.targets


def test_auto_on_this_interpreter_names_what_it_cannot_replace(installperm: InstallPerm) -> None:
    env = installperm.system(python=running_base(), mode="auto", locked=())
    if env.mode.name == "in-place":
        pytest.skip(f"auto went in place on {running_base()}: nothing to name ({env.mode.reason})")
    found = re.search(r"scheme's (\w+) directory (\S+) (holds|is not)", env.mode.reason)
    assert found, env.mode.reason
    key, path, why = found.group(1), Path(found.group(2)), found.group(3)
    if why == "is not":  # e.g. Debian without python3-dev: no /usr/include/python3.X
        assert not path.is_dir(), path
        return
    runtime = Path(sys.base_prefix) if key == "data" else path / "Python.h"
    assert path.is_dir() and (runtime == path or runtime.exists()), (key, path)
