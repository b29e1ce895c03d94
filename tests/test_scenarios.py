"""The scenario files: the built-in set covers what the issue asks, and a
malformed file is refused with the file, the key and the rule."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_installperm.errors import ScenarioError
from pytest_installperm.scenarios import BUILTIN_DIR, Request, load_all, load_file

BUILTIN = load_all()
VALID = """
name = "{name}"
description = "why it matters"
"""


def test_at_least_twenty_builtin_scenarios_with_unique_names_and_reasons():
    names = [s.name for s in BUILTIN]
    assert len(names) >= 20
    assert len(set(names)) == len(names)
    assert all(len(s.description) > 40 for s in BUILTIN), "every scenario says why it matters"
    assert {p.stem for p in BUILTIN_DIR.glob("*.toml")} == set(names)


# Each row of pip's decision table (docs/design.md, "Verified facts") and each
# situation the issue lists must have at least one scenario; the predicate says
# which.
COVERAGE = {
    "fallback": lambda s: s.message == "fallback" and s.environment.kind == "system",
    "user site disabled": lambda s: not s.environment.user_site,
    "--user": lambda s: s.request.user is True and s.request.user_via == "flag",
    "--no-user": lambda s: s.request.user is False,
    "PIP_USER": lambda s: s.request.user_via == "env",
    "--prefix": lambda s: s.request.prefix,
    "--target": lambda s: s.request.target,
    "--root": lambda s: s.request.root,
    "PEP 668": lambda s: s.environment.externally_managed and s.outcome == "error",
    "--break-system-packages": lambda s: s.request.break_system_packages,
    "venv": lambda s: s.environment.kind == "venv" and not s.environment.system_site_packages,
    "venv with system site": lambda s: s.environment.system_site_packages,
    "HOME missing": lambda s: s.environment.home == "missing",
    "HOME unwritable": lambda s: s.environment.home == "unwritable",
    "locked user base": lambda s: "user" in s.environment.locked,
    "scripts-only lock": lambda s: s.environment.locked == ("system-scripts",),
    "upgrade over root-owned": lambda s: s.request.upgrade and "system" in s.environment.locked,
    "EROFS": lambda s: s.environment.lock_mode == "readonly-fs",
}


@pytest.mark.parametrize("topic", sorted(COVERAGE))
def test_builtin_scenarios_cover(topic):
    covering = [s.name for s in BUILTIN if COVERAGE[topic](s)]
    assert covering, f"no built-in scenario covers {topic}"


def test_the_original_report_is_a_scenario_with_its_reference():
    (fallback,) = [s for s in BUILTIN if s.name == "fallback-to-user"]
    assert "https://github.com/astral-sh/uv/issues/3635" in fallback.references
    assert (fallback.outcome, fallback.message) == ("user", "fallback")


def test_a_minimal_file_gets_the_documented_defaults(tmp_path):
    path = tmp_path / "minimal.toml"
    path.write_text(VALID.format(name="minimal"))
    scenario = load_file(path)
    assert scenario.environment.kind == "system"
    assert scenario.environment.locked == ("system",)
    assert scenario.environment.externally_managed is False
    assert scenario.request == Request()
    assert (scenario.wheel.name, scenario.wheel.version, scenario.wheel.console_scripts) == (
        "demo",
        "1.0",
        True,
    )
    assert scenario.outcome is None  # the oracle decides


def test_declared_divergences_and_known_breaks_are_read(tmp_path):
    path = tmp_path / "declared.toml"
    path.write_text(
        VALID.format(name="declared")
        + textwrap.dedent("""
        [installer.uv]
        diverges = { outcome = "error", reason = "no fallback" }
        [installer.pip.breaks]
        residue = "no rollback"
    """)
    )
    scenario = load_file(path)
    assert scenario.installers["uv"].diverges == ("error", "no fallback")
    assert dict(scenario.installers["pip"].breaks) == {"residue": "no rollback"}


BAD = [
    ("bogus = 1", "'bogus'", "is not a known key"),
    ("[environment]\nkind = 'docker'", "'environment.kind'", "must be one of system, venv"),
    ("[environment]\nlocked = ['etc']", "'environment.locked'", "roles are"),
    ("[environment]\nhome = 'gone'", "'environment.home'", "must be one of"),
    ("[environment]\nuser_site = 'yes'", "'environment.user_site'", "must be a bool"),
    (
        "[environment]\nkind = 'venv'\nexternally_managed = true",
        "'environment.externally_managed'",
        "kind = 'system' only",
    ),
    ("[environment]\npreinstalled = ['demo>=0.9']", "'environment.preinstalled'", "NAME==VERSION"),
    ("[request]\nupgrade = true", "'request.upgrade'", "needs environment.preinstalled"),
    ("[request]\nprefix = true\ntarget = true", "'request.prefix'", "mutually exclusive"),
    ("[request]\nuser_via = 'env'", "'request.user_via'", "needs 'user'"),
    ("[request]\nuser = 1", "'request.user'", "must be a bool"),
    ("[expect]\noutcome = 'somewhere'", "'expect.outcome'", "must be one of system"),
    ("[installer.uv.breaks]\nspeed = 'slow'", "'installer.uv.breaks'", "invariants are"),
    ("[installer.uv.diverges]\noutcome = 'error'", "'installer.uv.diverges.reason'", "is required"),
    ("[wheel]\nversion = 'one'", "'wheel.version'", "valid version"),
    (
        "[installer.uv]\noutcome = 'user'\ndiverges = { outcome = 'error', reason = 'x' }",
        "'installer.uv.diverges'",
        "contradicts 'outcome'",
    ),
]


@pytest.mark.parametrize(
    ("extra", "key", "rule"), BAD, ids=[b[1].strip("'") + "-" + str(i) for i, b in enumerate(BAD)]
)
def test_a_malformed_file_names_file_key_and_rule(tmp_path, extra, key, rule):
    path = tmp_path / "bad.toml"
    path.write_text(VALID.format(name="bad") + extra + "\n")
    with pytest.raises(ScenarioError) as info:
        load_file(path)
    message = str(info.value)
    assert str(path) in message
    assert f"key {key}" in message
    assert rule in message


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ('description = "x"', "key 'name' is required"),
        ('name = "other"\ndescription = "x"', "must equal the file name"),
        ('name = "bad"\ndescription = "  "', "must say why"),
        ('name = "bad"\ndescription = "x', "is not valid TOML"),
    ],
)
def test_name_description_and_syntax_are_checked(tmp_path, text, rule):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ScenarioError, match=rule) as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_extra_directories_add_scenarios_and_names_stay_unique(tmp_path):
    extra = tmp_path / "mine"
    extra.mkdir()
    (extra / "my-case.toml").write_text(VALID.format(name="my-case"))
    names = [s.name for s in load_all([extra])]
    assert "my-case" in names
    assert names == sorted(names)
    (extra / "fallback-to-user.toml").write_text(VALID.format(name="fallback-to-user"))
    with pytest.raises(ScenarioError, match="must be unique across scenario directories"):
        load_all([extra])
    with pytest.raises(ScenarioError, match="does not exist"):
        load_all([tmp_path / "nowhere"])


def test_request_describes_itself_in_pip_words():
    assert Request().describe() == "(no options)"
    assert Request(user=True, prefix=True).describe() == "--user --prefix"
    assert Request(user=True, user_via="env").describe() == "PIP_USER=1"
    assert Request(user=False, break_system_packages=True).describe() == (
        "--no-user --break-system-packages"
    )


def test_builtin_files_are_shipped_as_package_data():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"pytest_installperm.scenarios" = ["*.toml"]' in pyproject
