"""The verdicts, against real pip and uv, each shown passing and failing.

Every scenario runs in an inner pytest (``pytester``, in process) whose tests
share one module-scoped set of installer runs: the tests named ``test_fails_*``
must fail, and the outer test checks that they fail with the intended table,
at the user's line. The rest must pass. Scenarios, as in issue 3:

* the original report: pip falls back to the user site, uv is denied;
* a scripts-only lock: pip does not fall back and leaves a partial install;
* an upgrade over a root-owned older version;
* a wheel whose RECORD hash is wrong.

The table logic itself is also checked in process, on files installed with
``installer`` and a result object that is not a RunResult (the protocol the
in-process mode relies on).
"""

from __future__ import annotations

import os
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_installperm import Changes, MakeWheel, PlacementError, RoleError, WheelError
from pytest_installperm.changes import Snapshot
from pytest_installperm.placement import (
    assert_installed,
    assert_no_residue,
    assert_not_installed,
    assert_untouched,
    explain_comparison,
    resolve_scheme,
)
from pytest_installperm.wheels import install_wheel

CONFTEST = """
    import zipfile
    from types import SimpleNamespace

    import pytest

    from pytest_installperm import InstallPerm, build_wheel
    from pytest_installperm.fixtures import get_session

    SOURCE = {"demo/__init__.py": "def main():\\n    print('demo ran')\\n"}


    @pytest.fixture(scope="module")
    def factory(request):
        ip = InstallPerm(get_session(request.config))
        yield ip
        ip.close()


    @pytest.fixture(scope="module")
    def wheels(request):
        root = get_session(request.config).root

        def make(version="1.0", **kwargs):
            purelib = {"demo/__init__.py": SOURCE["demo/__init__.py"]
                       + f"VERSION = {version!r}\\n"}
            return build_wheel(root.new_dir("wheels-"), "demo", version, purelib=purelib,
                               console_scripts={"demo-cli": "demo:main"}, **kwargs)
        return make


    def corrupt(wheel, directory):
        out = directory / wheel.name
        with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info)
                if info.filename.endswith("/RECORD"):
                    data = data.replace(b"demo/__init__.py,sha256=",
                                        b"demo/__init__.py,sha256=AAAA")
                zout.writestr(info, data)
        return out
"""


def _inner(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makeconftest(textwrap.dedent(CONFTEST))
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    return pytester.runpytest("-p", "no:cacheprovider", "-rA")


def _no_internal_frames(result: pytest.RunResult) -> None:
    """``__tracebackhide__``: failures point at the test's line, not ours."""
    result.stdout.no_fnmatch_line("*pytest_installperm/placement/*.py:*")
    result.stdout.no_fnmatch_line("*pytest_installperm/run.py:*")


def test_report_pip_falls_back_uv_is_denied(pytester: pytest.Pytester) -> None:
    result = _inner(
        pytester,
        """
        from types import SimpleNamespace
        import pytest

        @pytest.fixture(scope="module")
        def report(factory, wheels):
            wheel = wheels()
            pip_env = factory.system(externally_managed=False, locked=("system",))
            uv_env = factory.system(externally_managed=False, locked=("system",))
            uv = uv_env.run(["uv", "pip", "install", "--python", uv_env.python, "--system",
                             wheel])
            return SimpleNamespace(wheel=wheel, pip=pip_env.pip("install", wheel), uv=uv)

        def test_pip_falls_back_to_the_user_site(report):
            assert "Defaulting to user installation" in report.pip.stdout
            report.pip.assert_installed(report.wheel, scheme="user")
            report.pip.assert_untouched("system")

        def test_uv_is_denied_and_leaves_nothing(report):
            assert report.uv.returncode != 0
            report.uv.assert_not_installed(report.wheel)
            report.uv.assert_no_residue()

        def test_fails_pip_in_system(report):
            report.pip.assert_installed(report.wheel, scheme="system")

        def test_fails_pip_not_installed(report):
            report.pip.assert_not_installed(report.wheel)

        def test_fails_pip_user_untouched(report):
            report.pip.assert_untouched("user")

        def test_fails_uv_installed(report):
            report.uv.assert_installed(report.wheel, scheme="system")

        def test_fails_changes_compared(report):
            assert report.pip.changes.under("user") == report.uv.changes.under("user")
    """,
    )
    result.assert_outcomes(passed=2, failed=5)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_pip_in_system _*",
            '>*report.pip.assert_installed(report.wheel, scheme="system")',
            "E*demo 1.0 (demo-1.0-py3-none-any.whl) is not installed as expected in the system"
            " scheme: 6 of 6 files wrong",
            "E*paths relative to *",
            "E*expected path*found",
            "E*prefix/*bin/demo-cli*elsewhere: home/.local/bin/demo-cli",
            "E*prefix/*lib/python3.*/*-packages/demo/__init__.py*elsewhere: "
            "home/.local/lib/python3.*/site-packages/demo/__init__.py",
            "E*prefix/*lib/python3.*/*-packages/demo-1.0.dist-info/RECORD*missing",
            "E*-m pip install *demo-1.0-py3-none-any.whl",
            "E*exit status 0 (backend *)",
            "E*| Defaulting to user installation because normal site-packages is not writeable",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_pip_not_installed _*",
            "E*demo 1.0 (demo-1.0-py3-none-any.whl) is installed, at least in part: * paths",
            "E*home/.local/bin/demo-cli*written by this run: bin/demo-cli",
            "E*home/.local/lib/python3.*/site-packages/demo-1.0.dist-info*installed: a dist-info"
            " of this release",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_pip_user_untouched _*",
            "E*role 'user' (home/.local) was touched: * paths",
            "E*home/.local/bin/demo-cli*created",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_uv_installed _*",
            "E*prefix/*bin/demo-cli*missing",
            "E*prefix/*lib/python3.*/*-packages/demo/__init__.py*missing",
            "E*exit status [1-9]*",
            "E*Permission denied (os error 13)*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_changes_compared _*",
            "E*assert <Changes: * created, 0 modified, 0 deleted> == <Changes: none>",
            "E*left (+ created, ~ modified, - deleted; by role):",
            "E*+ user-scripts: demo-cli",
        ]
    )
    _no_internal_frames(result)


def test_scripts_only_lock_pip_leaves_a_partial_install(pytester: pytest.Pytester) -> None:
    result = _inner(
        pytester,
        """
        from types import SimpleNamespace
        import pytest

        @pytest.fixture(scope="module")
        def run(factory, wheels):
            wheel = wheels()
            env = factory.system(externally_managed=False, locked=("system-scripts",))
            return SimpleNamespace(wheel=wheel, result=env.pip("install", wheel))

        def test_pip_does_not_fall_back_and_fails(run):
            assert run.result.returncode != 0
            assert "Defaulting to user installation" not in run.result.output
            assert "Permission denied" in run.result.stderr
            run.result.assert_untouched("user")
            run.result.assert_untouched("system-scripts")

        def test_fails_residue(run):
            run.result.assert_no_residue()

        def test_fails_installed(run):
            run.result.assert_installed(run.wheel, scheme="system")
    """,
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_residue _*",
            ">*run.result.assert_no_residue()",
            "E*residue of an unfinished install: * paths",
            "E*prefix/*lib/python3.*/*-packages/demo/__init__.py*listed only by unfinished "
            "demo-1.0.dist-info",
            "E*prefix/*lib/python3.*/*-packages/demo-1.0.dist-info*unfinished dist-info:*"
            "entry point script(s) never generated (not in RECORD): demo-cli",
            "E*exit status 1 (backend *)",
            "E*Permission denied*bin/demo-cli*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_installed _*",
            "E*prefix/*bin/demo-cli*missing",
        ]
    )
    _no_internal_frames(result)


def test_upgrade_over_a_root_owned_older_version(pytester: pytest.Pytester) -> None:
    result = _inner(
        pytester,
        """
        import os
        from types import SimpleNamespace
        import pytest

        @pytest.fixture(scope="module")
        def upgrade(factory, wheels):
            old, new = wheels("1.0"), wheels("2.0")
            env = factory.system(externally_managed=False, locked=("system",), preinstalled=[old])
            site = env.paths("system")["purelib"]
            before = {p: p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}
            assert any("demo-1.0.dist-info" in str(p) for p in before)
            # As a distro would leave them: root's (privdrop), or read-only (chmod).
            if os.geteuid() == 0:
                assert all(p.stat().st_uid == 0 for p in before)
            else:
                assert all(p.stat().st_mode & 0o222 == 0 for p in before)
            result = env.pip("install", "--no-index", "--find-links", str(new.parent),
                             "demo==2.0")
            after = {p: p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}
            return SimpleNamespace(old=old, new=new, result=result, before=before,
                                   after=after)

        def test_new_in_user_site_old_untouched(upgrade):
            upgrade.result.assert_installed(upgrade.new, scheme="user")
            upgrade.result.assert_untouched("system")
            upgrade.result.assert_installed(upgrade.old, scheme="system")
            upgrade.result.assert_no_residue()
            assert upgrade.after == upgrade.before

        def test_fails_new_in_system(upgrade):
            upgrade.result.assert_installed(upgrade.new, scheme="system")

        def test_fails_old_not_installed(upgrade):
            upgrade.result.assert_not_installed(upgrade.old)
    """,
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_new_in_system _*",
            "E*demo 2.0 (demo-2.0-py3-none-any.whl) is not installed as expected in the system"
            " scheme*",
            "E*home/.local/lib/python3.*/site-packages/demo/__init__.py*extra: also installed in "
            "the user scheme",
            "E*prefix/*lib/python3.*/*-packages/demo/__init__.py*hash mismatch: expected "
            "sha256=* got sha256=*",
            "E*prefix/*lib/python3.*/*-packages/demo-2.0.dist-info/METADATA*elsewhere: "
            "home/.local/lib/python3.*/site-packages/demo-2.0.dist-info/METADATA",
            "E*Looking in links: *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_old_not_installed _*",
            "E*demo 1.0 (demo-1.0-py3-none-any.whl) is installed, at least in part: 1 paths",
            "E*prefix/*lib/python3.*/*-packages/demo-1.0.dist-info*installed: a dist-info of "
            "this release",
        ]
    )
    _no_internal_frames(result)


def test_corrupt_hash_names_the_file_and_both_hashes(pytester: pytest.Pytester) -> None:
    result = _inner(
        pytester,
        """
        from types import SimpleNamespace
        import pytest
        from conftest import corrupt
        from pytest_installperm import read_wheel
        from pytest_installperm.fixtures import get_session

        @pytest.fixture(scope="module")
        def run(request, factory, wheels):
            bad = corrupt(wheels(), get_session(request.config).root.new_dir("bad-"))
            env = factory.system(externally_managed=False, locked=())
            return SimpleNamespace(bad=bad, result=env.pip("install", bad))

        def test_pip_accepts_the_corrupt_wheel(run):
            assert run.result.returncode == 0
            (member,) = read_wheel(run.bad).corrupt
            print("HASHES", member.record_hash, member.content_hash)

        def test_fails_installed(run):
            run.result.assert_installed(run.bad, scheme="system")
    """,
    )
    result.assert_outcomes(passed=1, failed=1)
    line = next(ln for ln in result.stdout.lines if ln.startswith("HASHES "))
    claimed, real = line.split()[1:]
    assert claimed.startswith("sha256=AAAA") and real.startswith("sha256=")
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_installed _*",
            f"E*prefix/*lib/python3.*/*-packages/demo/__init__.py*hash mismatch: expected "
            f"{claimed} got {real}*",
            f"E*note: the wheel itself is corrupt: its RECORD says {claimed} for demo/__init__.py "
            f"but the file in the archive hashes to {real}",
        ]
    )
    _no_internal_frames(result)


# ---------------------------------------------------------------------------
# in process: the table logic, on any object that satisfies the protocol
# ---------------------------------------------------------------------------

KEYS = ("purelib", "platlib", "scripts", "data", "headers")


@dataclass
class FakeEnv:
    """Not an Environment: only what placement.EnvironmentLike asks for."""

    root: Path
    python: Path
    roles: dict[str, Path] = field(default_factory=dict)
    snap: Snapshot | None = None

    def paths(self, role: str) -> dict[str, Path]:
        top = self.roles[role]
        site = top / "lib" / "site-packages"
        return {
            "purelib": site,
            "platlib": site,
            "scripts": top / "bin",
            "data": top,
            "headers": top / "include",
        }

    def snapshot(self) -> Snapshot:
        assert self.snap is not None
        return self.snap


@dataclass(frozen=True)
class FakeResult:
    """Not a RunResult: only what placement.Result asks for."""

    environment: FakeEnv
    changes: Changes
    returncode: int = 0
    stdout: str = ""
    stderr: str = "installed by the installer library\n"
    outside: frozenset[Path] = frozenset()

    def describe(self, lines: int = 15) -> str:
        return f"$ fake install\n  exit status {self.returncode}"


@pytest.fixture
def fake(tmp_path: Path) -> FakeEnv:
    roles = {name: tmp_path / name for name in ("system", "user", "cache")}
    for top in roles.values():
        top.mkdir()
    env = FakeEnv(tmp_path, tmp_path / "system" / "bin" / "python3", roles)
    env.snap = Snapshot.take(tmp_path)
    return env


def _install(env: FakeEnv, wheel: Path, role: str = "system") -> FakeResult:
    assert env.snap is not None
    install_wheel(wheel, env.paths(role), env.python)
    return FakeResult(env, env.snap.update().with_roles(env.roles))


def _rows(excinfo: pytest.ExceptionInfo[BaseException]) -> dict[str, str]:
    """The verdict's table as {relative path: found}."""
    rows = {}
    for line in str(excinfo.value).splitlines():
        if line.startswith("$ "):  # the installer's command and output follow
            break
        if line.startswith("  "):
            path, _, found = line.strip().partition("  ")
            rows[path] = found.strip()
    return rows


def test_protocol_result_passes_then_each_problem_is_a_row(
    make_wheel: MakeWheel, fake: FakeEnv
) -> None:
    wheel = make_wheel(
        "demo",
        console_scripts={"demo-cli": "demo:main"},
        scripts={"tool": "print('t')\n"},
        headers={"demo.h": "int d;\n"},
    )
    result = _install(fake, wheel)
    assert_installed(result, wheel, "system")
    assert_untouched(result, "user")
    assert_no_residue(result)
    site = fake.paths("system")["purelib"]
    (site / "demo" / "__init__.py").write_text("tampered\n")
    (site / "demo" / "extra.py").write_text("")
    (site / "demo-1.0.dist-info" / "INSTALLER").unlink()
    (fake.roles["system"] / "bin" / "tool").write_text("#!/usr/bin/python2\nprint('t')\n")
    later = _changes(fake)
    result = FakeResult(
        fake,
        Changes(
            result.changes.created | later.created,
            result.changes.modified | later.modified,
            result.changes.deleted | later.deleted,
            fake.roles,
        ),
    )
    with pytest.raises(PlacementError) as excinfo:
        assert_installed(result, wheel, "system", require=("INSTALLER",))
    rows = _rows(excinfo)
    rel = "system/lib/site-packages"
    assert rows["system/bin/tool"].startswith(
        f"shebang: expected #!{fake.python} got '#!/usr/bin/python2'; RECORD hash wrong"
    )
    assert rows[f"{rel}/demo/__init__.py"].startswith("hash mismatch: expected sha256=")
    assert "; RECORD hash wrong: installed RECORD says sha256=" in rows[f"{rel}/demo/__init__.py"]
    assert rows[f"{rel}/demo/extra.py"] == "extra: written by this run, not part of the wheel"
    assert rows[f"{rel}/demo-1.0.dist-info/INSTALLER"] == "missing"
    assert rows["system/include/demo/demo.h"] == "ok"
    assert rows["system/bin/demo-cli"] == "ok"
    assert rows[f"{rel}/demo-1.0.dist-info/RECORD"] == "ok (installer metadata)"
    assert list(rows)[1:] == sorted(list(rows)[1:], key=Path)  # after the heading
    assert next(iter(rows)) == "expected path"
    assert str(excinfo.value).rstrip().endswith("exit status 0")


def test_scripts_and_launchers_are_checked_for_mode_import_and_body(
    make_wheel: MakeWheel, fake: FakeEnv
) -> None:
    wheel = make_wheel(
        "demo", console_scripts={"demo-cli": "demo:main"}, scripts={"tool": "print('t')\n"}
    )
    result = _install(fake, wheel)
    bin_dir = fake.roles["system"] / "bin"
    (bin_dir / "demo-cli").write_text(f"#!{fake.python}\nimport sys\n")
    (bin_dir / "tool").chmod(0o644)
    (bin_dir / "tool").write_text(f"#!{fake.python}\nprint('changed')\n")
    later = _changes(fake)
    result = FakeResult(
        fake,
        Changes(
            result.changes.created | later.created,
            result.changes.modified | later.modified,
            result.changes.deleted | later.deleted,
            fake.roles,
        ),
    )
    with pytest.raises(PlacementError) as excinfo:
        assert_installed(result, wheel, "system")
    rows = _rows(excinfo)
    assert rows["system/bin/demo-cli"].startswith(
        "launcher does not import demo; RECORD hash wrong"
    )
    assert rows["system/bin/tool"].startswith("content after the shebang differs: expected sha256=")
    assert "; not executable (mode 644); RECORD hash wrong" in rows["system/bin/tool"]


def _changes(env: FakeEnv) -> Changes:
    assert env.snap is not None
    return env.snap.update().with_roles(env.roles)


def test_stash_and_duplicate_dist_infos_are_residue(make_wheel: MakeWheel, fake: FakeEnv) -> None:
    result = _install(fake, make_wheel("demo", "1.0"))
    site = fake.paths("system")["purelib"]
    (site / "~emo").mkdir()
    (site / "demo-2.0.dist-info").mkdir()
    (site / "demo-2.0.dist-info" / "METADATA").write_text("Name: demo\n")
    result = FakeResult(fake, _changes(fake))
    with pytest.raises(PlacementError) as excinfo:
        assert_no_residue(result)
    rows = _rows(excinfo)
    rel = "system/lib/site-packages"
    assert rows[f"{rel}/~emo"] == "stash left by an interrupted uninstall or upgrade"
    assert rows[f"{rel}/demo-2.0.dist-info"] == "unfinished dist-info: has no RECORD"
    assert f"{rel}/demo-2.0.dist-info/METADATA" not in rows  # the dist-info's row covers it
    assert rows[f"{rel}/demo-1.0.dist-info"] == (
        "one of 2 dist-infos of demo: demo-1.0.dist-info, demo-2.0.dist-info"
    )


def test_untouched_sees_a_rewrite_in_place(make_wheel: MakeWheel, fake: FakeEnv) -> None:
    _install(fake, make_wheel("demo"))
    target = fake.paths("system")["purelib"] / "demo" / "__init__.py"
    stat = os.stat(target)
    with open(target, "r+b") as stream:  # same inode, same size, same directory
        stream.write(b"X")
    os.utime(fake.paths("system")["purelib"] / "demo", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = FakeResult(fake, Changes().with_roles(fake.roles))  # a diff that missed it
    with pytest.raises(PlacementError, match=r"demo/__init__.py  rewritten in place"):
        assert_untouched(result, "system")
    with pytest.raises(RoleError, match="unknown role 'nowhere'"):
        assert_untouched(result, "nowhere")


def test_bad_wheels_never_pass(make_wheel: MakeWheel, fake: FakeEnv, tmp_path: Path) -> None:
    result = FakeResult(fake, Changes().with_roles(fake.roles))
    not_a_wheel = tmp_path / "notes.txt"
    not_a_wheel.write_text("hi")
    good = make_wheel("demo")
    no_wheel_file = tmp_path / good.name
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(no_wheel_file, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith("/WHEEL"):
                zout.writestr(info, zin.read(info))
    for verdict in (assert_installed, assert_not_installed):
        with pytest.raises(WheelError, match=r"notes.txt: not a wheel: bad file name"):
            verdict(result, not_a_wheel)
        with pytest.raises(
            WheelError,
            match=r"demo-1.0-py3-none-any.whl: "
            r"demo-1.0.dist-info/WHEEL is missing",
        ):
            verdict(result, no_wheel_file)
    with pytest.raises(RoleError, match="scheme='elsewhere': must be 'user', 'system'"):
        resolve_scheme(fake, "elsewhere")


def test_assertrepr_for_changes_against_a_set() -> None:
    changes = Changes.of(["/r/home/.local/bin/x"], [], ["/r/prefix/old"]).with_roles(
        {"user": Path("/r/home/.local"), "system": Path("/r/prefix")}
    )
    lines = explain_comparison("==", changes, set())
    assert lines is not None
    assert "  + user: bin/x" in lines and "  - system: old" in lines
    assert any(line.startswith("hint: a Changes never equals a set") for line in lines)
    assert explain_comparison("==", 1, 2) is None


def test_writes_outside_allowed_roles_are_noted(make_wheel: MakeWheel, fake: FakeEnv) -> None:
    wheel = make_wheel("demo")
    result = _install(fake, wheel)
    stray = fake.root / "system" / "stray.txt"
    result = FakeResult(fake, result.changes, outside=frozenset({stray}))
    with pytest.raises(
        PlacementError,
        match=r"note: this run also wrote outside the roles it "
        r"may write: system/stray.txt\n\$ fake install",
    ):
        assert_not_installed(result, wheel)


def test_verdicts_refuse_a_command_that_never_started(installperm, make_wheel):
    """A missing installer "installs nothing": no verdict may pass on that."""
    wheel = make_wheel("demo", "1.0")
    env = installperm.system(externally_managed=False, locked=("system",))
    result = env.run(["no-such-installer-xyz", "install", wheel])
    assert result.error is not None
    for verdict in (
        lambda: result.assert_not_installed(wheel),
        result.assert_no_residue,
        lambda: result.assert_untouched("system"),
    ):
        with pytest.raises(PlacementError, match="the installer never started"):
            verdict()
