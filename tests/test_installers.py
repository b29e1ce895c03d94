"""The installer registry: presets declare what they need, and plugins or
conftests add presets that the matrix then runs like the built-in ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_installperm.installers import (
    Context,
    Installer,
    Registry,
    Unsupported,
    default_registry,
    parse,
)
from pytest_installperm.installers.pip import Pip
from pytest_installperm.installers.registry import BUILTIN, isolation
from pytest_installperm.installers.uv import Uv
from pytest_installperm.sandbox import Sandbox
from pytest_installperm.scenarios import Request


def test_builtin_presets_are_registered_under_their_own_names():
    registry = default_registry()
    assert set(BUILTIN) <= set(registry.names())
    assert [registry.make(name).name for name in BUILTIN] == list(BUILTIN)


def test_presets_declare_programs_libraries_and_isolation(tmp_path):
    sandbox = Sandbox(tmp_path)
    assert Uv().programs == ("uv",)
    assert parse("installer").libraries == ("installer",)
    env = isolation(default_registry().presets(), sandbox)
    assert env["PIP_CONFIG_FILE"] == "/dev/null"
    assert env["UV_CACHE_DIR"] == str(tmp_path / "cache" / "uv")


class _Conflicting(Installer):
    name = "conflicting"

    def isolation(self, sandbox: Sandbox) -> dict[str, str]:
        return {"PIP_CONFIG_FILE": str(sandbox.home / "pip.conf")}


def test_two_presets_may_not_disagree_on_an_isolation_variable(tmp_path):
    with pytest.raises(ValueError, match="'conflicting' sets PIP_CONFIG_FILE="):
        isolation([Pip(), _Conflicting()], Sandbox(tmp_path))


def test_registry_refuses_bad_and_duplicate_names():
    registry = Registry()
    registry.add("conflicting", _Conflicting, origin="test")
    with pytest.raises(ValueError, match="already registered by test"):
        registry.add("conflicting", _Conflicting)
    with pytest.raises(ValueError, match="must be letters"):
        registry.add("bad name", _Conflicting)
    registry.add("other", _Conflicting)
    with pytest.raises(ValueError, match="made an installer named 'conflicting'"):
        registry.make("other")


CONFTEST = """
import os
from pytest_installperm.installers import Command, Installer
from pytest_installperm.installers.base import pip_flags

# pip, run through runpy by a preset that needs its own isolation variable.
RUN = (
    "import os, runpy, sys; assert os.environ['MINE_HOME'] == os.environ['HOME']; "
    "sys.argv = ['pip', 'install', *sys.argv[1:]]; runpy.run_module('pip', run_name='__main__')"
)


class Mine(Installer):
    name = "mine"

    def isolation(self, sandbox):
        return {"MINE_HOME": str(sandbox.home)}

    def command(self, request, ctx):
        flags, env = pip_flags(request, ctx)
        return Command((ctx.python, "-c", RUN, *flags, ctx.wheel), env)


def pytest_installperm_installers(registry):
    registry.add("mine", Mine)
"""


def test_a_conftest_adds_a_preset_that_runs_in_the_matrix(pytester):
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest(
        "--installperm",
        "--installperm-installer=mine",
        "-k",
        "system-writable or fallback-to-user",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*installperm matrix*",
            "scenario*mine*",
            "fallback-to-user*user ok*",
            "system-writable*system ok*",
        ]
    )


def test_a_preset_only_the_hook_knows_is_unknown_without_it(pytester):
    result = pytester.runpytest("--installperm", "--installperm-installer=mine")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown preset 'mine'; presets are hatch, installer, pdm, pip, pipx, poetry, uv,*"]
    )


def test_a_hook_registering_a_builtin_name_is_a_usage_error(pytester):
    pytester.makeconftest(
        textwrap.dedent("""
        from pytest_installperm.installers.pip import Pip

        def pytest_installperm_installers(registry):
            registry.add("pip", Pip)
    """)
    )
    result = pytester.runpytest("--installperm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*installer preset 'pip' from a plugin is already registered by pytest-installperm*"]
    )


def test_template_inherits_a_preset_and_placeholders_sit_inside_arguments():
    wheel = Path("/w/demo-1.0-py3-none-any.whl")
    ctx = Context(Path("/py"), wheel, Path("/p"), Path("/t"), Path("/r"), Path("/h"), "system")
    mine = parse("pipsrc=pip:{python} /src/pip install {flags} demo@file://{wheel}")
    assert mine.preset == "pip"
    assert mine.messages == Pip.messages
    command = mine.command(Request(user=True), ctx)
    assert not isinstance(command, Unsupported)
    assert [str(a) for a in command.argv] == [
        "/py",
        "/src/pip",
        "install",
        "--user",
        f"demo@file://{wheel}",
    ]
    plain = parse("plain=tool {wheel}")
    assert plain.preset == "plain"
    assert dict(plain.messages) == {}
    with pytest.raises(pytest.UsageError, match="unknown preset 'nope' to inherit from"):
        parse("x=nope:{python} {wheel}")


@pytest.mark.parametrize(
    ("spec", "outcomes"),
    [
        # The pip preset's scenario declaration (no rollback: residue) applies.
        ("pipsrc=pip:{python} -m pip install {flags} {wheel}", {"xfailed": 1}),
        # Without the preset, the same residue is an undeclared invariant break.
        ("pipsrc={python} -m pip install {flags} {wheel}", {"failed": 1}),
    ],
)
def test_a_template_inherits_the_declarations_made_for_its_preset(pytester, spec, outcomes):
    result = pytester.runpytest(
        "--installperm", f"--installperm-installer={spec}", "-k", "scripts-only-lock"
    )
    result.assert_outcomes(**outcomes)
    if "failed" in outcomes:
        result.stdout.fnmatch_lines(["*invariant residue broken: failed and left residue*"])


def test_a_distribution_adds_a_preset_through_its_entry_point(pytester):
    """The entry point group ``pytest_installperm.installers``, as an installed
    distribution's metadata declares it."""
    pytester.makepyfile(
        mytool_preset=textwrap.dedent("""
        from pytest_installperm.installers import Command, Installer

        class MyTool(Installer):
            name = "mytool"

            def command(self, request, ctx):
                return Command(("mytool", ctx.wheel))
        """)
    )
    dist = pytester.path / "mytool_preset-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mytool-preset\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest_installperm.installers]\nmytool = mytool_preset:MyTool\n"
    )
    pytester.syspathinsert()
    assert "mytool" in default_registry().names()
    result = pytester.runpytest(
        "--installperm",
        "--installperm-installer=mytool",
        "--collect-only",
        "-q",
    )
    result.stdout.fnmatch_lines(["installperm::fallback-to-user[[]mytool]"])
