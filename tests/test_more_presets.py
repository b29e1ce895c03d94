"""The poetry, pdm, pipx and hatch presets: what each asks of its tool, and what
each expects where it differs from pip.

These check the declarations; the matrix run in CI checks them against the
real tools (every cell agrees, is declared, or skips with its reason).
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_installperm import oracle
from pytest_installperm.installers import Command, Context, Unsupported, parse
from pytest_installperm.installers.base import requirement_of, venv_scheme
from pytest_installperm.matrix import expectation
from pytest_installperm.sandbox import Sandbox
from pytest_installperm.scenarios import Request, load_all

BUILTIN = {s.name: s for s in load_all([])}
WHEEL = Path("/wheels/demo-1.0-py3-none-any.whl")


def _ctx(tmp_path: Path, *, kind: str = "system", debian: bool = False) -> Context:
    site = "dist-packages" if debian else "site-packages"
    prefix = tmp_path / "prefix"
    system = {
        "purelib": prefix / "lib" / "python3.11" / site,
        "platlib": prefix / "lib" / "python3.11" / site,
        "scripts": prefix / "bin",
        "data": prefix,
        "headers": prefix / "include" / "python3.11",
    }
    work = tmp_path / "work"
    return Context(
        prefix / "bin" / "python3.11",
        WHEEL,
        work / "prefix",
        work / "target",
        work / "root",
        tmp_path / "home",
        kind,
        tmp_path / "lib",
        work,
        {"system": system, "user": system},
    )


@pytest.mark.parametrize("name", ["poetry", "pdm", "pipx", "hatch"])
def test_each_preset_is_registered_and_refuses_what_it_cannot_express(name, tmp_path):
    installer = parse(name)
    assert installer.name == name
    ctx = _ctx(tmp_path)
    assert isinstance(installer.command(Request(), ctx), Command)
    for request, option in (
        (Request(prefix=True), "--prefix"),
        (Request(target=True), "--target"),
        (Request(root=True), "--root"),
        (Request(user=False), "--no-user"),
    ):
        refused = installer.command(request, ctx)
        assert isinstance(refused, Unsupported), (name, option)
        assert f"{name} cannot express {option}" in refused.reason


@pytest.mark.parametrize("name", ["poetry", "pdm", "pipx", "hatch"])
def test_isolation_keeps_each_tool_inside_the_sandbox(name, tmp_path):
    (tmp_path / "sb").mkdir()
    sandbox = Sandbox(tmp_path / "sb")
    for key, value in parse(name).isolation(sandbox).items():
        if value.startswith("/"):
            assert Path(value).is_relative_to(sandbox.root), (key, value)


def test_poetry_runs_on_the_environments_interpreter_in_a_project(tmp_path):
    ctx = _ctx(tmp_path)
    command = parse("poetry").command(Request(upgrade=True), ctx)
    assert isinstance(command, Command)
    assert command.argv[:3] == (ctx.python, "-m", "poetry")
    assert command.env["PYTHONPATH"] == str(ctx.libraries)
    assert command.env["POETRY_VIRTUALENVS_CREATE"] == "false"
    assert "VIRTUAL_ENV" not in command.env
    project = tomllib.loads(command.files["pyproject.toml"])
    assert project["project"]["dependencies"] == [f"demo @ {WHEEL.as_uri()}"]
    assert project["tool"]["poetry"]["package-mode"] is False
    venv = parse("poetry").command(Request(), _ctx(tmp_path, kind="venv"))
    assert isinstance(venv, Command)
    assert venv.env["VIRTUAL_ENV"] == str(ctx.python.parent.parent)


def test_pdm_expresses_user_through_its_global_config(tmp_path):
    ctx = _ctx(tmp_path)
    command = parse("pdm").command(Request(user=True), ctx)
    assert isinstance(command, Command)
    assert command.env["PDM_PYTHON"] == str(ctx.python)
    assert command.env["PDM_CONFIG_FILE"] == str(ctx.work / "pdm-config.toml")
    assert tomllib.loads(command.files["pdm-config.toml"]) == {
        "global_project": {"user_site": True}
    }
    assert "--global" in command.argv
    plain = parse("pdm").command(Request(), ctx)
    assert isinstance(plain, Command)
    assert tomllib.loads(plain.files["pdm-config.toml"])["global_project"]["user_site"] is False


def test_poetry_on_debian_declares_the_dist_packages_bug(tmp_path):
    scenario = BUILTIN["fallback-to-user"]
    pyenv = expectation(scenario, parse("poetry"), {}, _ctx(tmp_path))
    assert pyenv.outcome == "user" and pyenv.declared is None  # pip's outcome: agrees
    assert pyenv.breaks == {}
    debian = expectation(scenario, parse("poetry"), {}, _ctx(tmp_path, debian=True))
    assert debian.outcome == "user" and debian.declared is None  # only the script lands
    assert "python-poetry/poetry#6459" in debian.breaks["one-scheme"]
    off = expectation(
        BUILTIN["user-site-disabled"], parse("poetry"), {}, _ctx(tmp_path, debian=True)
    )
    assert off.declared is not None and off.declared[0] == "user"
    assert "#6459" in off.declared[1] and "one-scheme" in off.breaks


def test_poetry_declares_what_it_does_instead_of_pip(tmp_path):
    ctx = _ctx(tmp_path)
    marker = expectation(BUILTIN["pep668-marker"], parse("poetry"), {}, ctx)
    assert marker.declared is not None and marker.declared[0] == "system"
    assert "EXTERNALLY-MANAGED" in marker.declared[1]
    scripts = expectation(BUILTIN["scripts-only-lock"], parse("poetry"), {}, ctx)
    assert scripts.declared is not None and scripts.declared[0] == "user"
    upgrade = expectation(BUILTIN["upgrade-over-root-owned"], parse("poetry"), {}, ctx)
    assert upgrade.declared is not None and upgrade.declared[0] == "error"
    writable = expectation(BUILTIN["system-writable"], parse("poetry"), {}, ctx)
    assert writable.declared is None and writable.outcome == "system"


@pytest.mark.parametrize("name", ["pipx", "hatch"])
def test_tools_with_environments_of_their_own_expect_own(name, tmp_path):
    ctx = _ctx(tmp_path)
    plain = expectation(BUILTIN["system-writable"], parse(name), {}, ctx)
    assert plain.declared is not None and plain.declared[0] == "own"
    missing = expectation(BUILTIN["home-missing"], parse(name), {}, ctx)
    assert missing.declared is None and missing.outcome == "error"  # as pip: no declaration
    assert "own" in parse(name).schemes(ctx)


def test_pipx_declares_its_app_links_in_the_user_scripts_directory(tmp_path):
    exp = expectation(BUILTIN["system-writable"], parse("pipx"), {}, _ctx(tmp_path))
    assert "PIPX_BIN_DIR" in exp.breaks["one-scheme"]
    locked = replace(
        BUILTIN["system-writable"],
        environment=replace(BUILTIN["system-writable"].environment, locked=("user",)),
    )
    assert expectation(locked, parse("pipx"), {}, _ctx(tmp_path)).outcome in ("error", "system")


def test_pdm_never_falls_back(tmp_path):
    exp = expectation(BUILTIN["fallback-to-user"], parse("pdm"), {}, _ctx(tmp_path))
    assert exp.declared is not None and exp.declared[0] == "error"
    assert oracle.decide(BUILTIN["fallback-to-user"]).outcome == "user"


def test_a_venv_scheme_is_read_without_following_links(tmp_path):
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.12" / "site-packages").mkdir(parents=True)
    (venv / "lib" / "python3.0").symlink_to(tmp_path)  # never taken
    scheme = venv_scheme(venv)
    assert scheme["purelib"] == venv / "lib" / "python3.12" / "site-packages"
    assert scheme["headers"] == venv / "include" / "site" / "python3.12"
    assert venv_scheme(tmp_path / "nothing")["purelib"].parent.name == "python3"
    assert requirement_of(WHEEL) == f"demo @ {WHEEL.as_uri()}"
