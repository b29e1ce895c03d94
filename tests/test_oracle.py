"""The oracle as a spec: pure checks of pip's rules and their order.

That the oracle agrees with *real* pip 26.3 on every built-in scenario is
checked in test_matrix.py, by the one full pip run of the matrix: each pip item
compares real pip's outcome and message with the scenario's expectation, and
test_every_builtin_file_states_what_the_oracle_decides below ties those
expectations to the oracle.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from packaging.version import Version

from pytest_installperm import oracle
from pytest_installperm.scenarios import EnvironmentSpec, Request, Scenario, WheelSpec, load_all

BUILTIN = {s.name: s for s in load_all()}


def make(*, request: Request | None = None, **environment: object) -> Scenario:
    return Scenario(
        name="t",
        description="t",
        path=Path("t.toml"),
        environment=EnvironmentSpec(**environment),  # type: ignore[arg-type]
        wheel=WheelSpec(),
        request=request or Request(),
    )


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_file_states_what_the_oracle_decides(name):
    scenario = BUILTIN[name]
    decided = oracle.decide(scenario)
    assert (scenario.outcome, scenario.message) == (decided.outcome, decided.message), (
        f"{scenario.path} says {scenario.outcome}/{scenario.message}, the oracle "
        f"{decided.outcome}/{decided.message} ({decided.rule})"
    )


def test_fallback_only_without_flags_with_user_site_and_locked_lib():
    assert oracle.decide(make(locked=("system",))).message == "fallback"
    assert oracle.decide(make(locked=())).outcome == "system"
    assert oracle.decide(make(locked=("system",), user_site=False)).outcome == "error"
    locked_prefix = make(locked=("system",), request=Request(prefix=True))
    assert oracle.decide(locked_prefix).outcome == "prefix"


def test_scripts_directory_is_never_checked_so_pip_goes_system_and_fails():
    decided = oracle.decide(make(locked=("system-scripts",)))
    assert (decided.outcome, decided.message) == ("error", "oserror-consider-user")
    no_scripts = make(locked=("system-scripts",))
    no_scripts = replace(no_scripts, wheel=WheelSpec(console_scripts=False))
    assert oracle.decide(no_scripts).outcome == "system"


def test_user_with_target_is_refused_before_pep668_and_pep668_before_user_with_prefix():
    marked = {"locked": (), "externally_managed": True}
    both = make(request=Request(user=True, target=True), **marked)
    assert oracle.decide(both).message == "user-with-target"
    # --prefix exempts from PEP 668, so --user --prefix reaches its own refusal...
    assert oracle.decide(make(request=Request(user=True, prefix=True), **marked)).message == (
        "user-with-prefix"
    )
    # ...while --user alone is not exempt.
    assert oracle.decide(make(request=Request(user=True), **marked)).message == (
        "externally-managed"
    )


@pytest.mark.parametrize(
    "request_",
    [
        Request(prefix=True),
        Request(target=True),
        Request(root=True),
        Request(break_system_packages=True),
    ],
)
def test_pep668_exemptions(request_):
    decided = oracle.decide(make(locked=(), externally_managed=True, request=request_))
    assert decided.message != "externally-managed"
    assert decided.outcome != "error"


def test_venvs_ignore_the_marker_and_refuse_user_without_system_site():
    venv = make(kind="venv", locked=(), request=Request(user=True))
    assert oracle.decide(venv).message == "user-in-venv"
    with_site = make(kind="venv", locked=(), system_site_packages=True, request=Request(user=True))
    assert oracle.decide(with_site).outcome == "user"
    assert oracle.decide(make(kind="venv", locked=("system",))).message == (
        "oserror-check-permissions"
    )


def test_erofs_gets_no_hint_and_a_failed_fallback_says_check_the_permissions():
    erofs = make(locked=("system",), lock_mode="readonly-fs", request=Request(user=False))
    assert oracle.decide(erofs).message == "oserror-no-hint"
    for home in ("missing", "unwritable"):
        decided = oracle.decide(make(locked=("system",), home=home))
        assert (decided.outcome, decided.message) == ("error", "oserror-check-permissions")


def test_pip_user_env_is_the_same_request_as_the_flag():
    flag = oracle.decide(make(locked=(), request=Request(user=True)))
    env = oracle.decide(make(locked=(), request=Request(user=True, user_via="env")))
    assert flag == env


def test_oracle_is_the_spec_of_the_pip_under_test():
    """The oracle encodes one pip release; the test extra pins that release."""
    import importlib.metadata

    assert importlib.metadata.version("pip") == oracle.PIP_VERSION


# ---------------------------------------------------------------------------
# the rules by release (each change is proved against real releases in test_versions.py)
# ---------------------------------------------------------------------------


def test_the_default_release_is_the_pinned_one_and_has_every_change():
    assert all(oracle.has(change, None) for change in oracle.CHANGES)
    for name, scenario in BUILTIN.items():
        assert oracle.decide(scenario) == oracle.decide(scenario, oracle.PIP_VERSION), name


def test_every_change_names_its_release_and_a_reference():
    for name, change in oracle.CHANGES.items():
        assert change.reference, name
        assert oracle.has(name, change.since)
        assert change.since > Version("19.3.1"), name


def test_a_development_version_counts_as_the_release_it_leads_to():
    assert oracle.has("posix-local-prefix", "26.3.dev0")
    assert oracle.has("posix-local-prefix", "26.3+editable")
    assert not oracle.has("posix-local-prefix", "26.2.1")


def test_a_version_that_is_not_pep440_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'NOPE'"):
        oracle.decide(BUILTIN["fallback-to-user"], "NOPE")


def test_before_20_pip_does_not_fall_back():
    decided = oracle.decide(BUILTIN["fallback-to-user"], "19.3.1")
    assert (decided.outcome, decided.message) == ("error", "oserror-consider-user")
    assert oracle.decide(BUILTIN["fallback-to-user"], "20.0").message == "fallback"


def test_pep668_from_23_and_its_override_from_2301():
    marked = BUILTIN["pep668-marker"]
    assert oracle.decide(marked, "22.3.1").outcome == "system"
    assert oracle.decide(marked, "23.0").message == "externally-managed"
    override = BUILTIN["pep668-break-system-packages"]
    assert oracle.decide(override, "23.0.1").outcome == "system"


def test_user_with_the_user_site_disabled_installs_there_before_253():
    scenario = BUILTIN["user-flag-user-site-disabled"]
    assert oracle.decide(scenario, "25.2").outcome == "user"
    assert oracle.decide(scenario, "25.3").message == "user-site-disabled"


def test_venv_permission_errors_suggest_user_before_211():
    scenario = BUILTIN["venv-locked"]
    assert oracle.decide(scenario, "21.0.1").message == "oserror-consider-user"
    assert oracle.decide(scenario, "21.1").message == "oserror-check-permissions"


def test_message_wording_by_release():
    patterns = {"oserror": r"OSError: \[Errno 13\]", "user-with-target": "Can not combine"}
    assert oracle.messages(patterns, "20.3.4")["oserror"] == r"EnvironmentError: \[Errno 13\]"
    assert oracle.messages(patterns, "21.0")["oserror"] == patterns["oserror"]
    assert "DistutilsOptionError" in oracle.messages(patterns, "20.0.2")["user-with-target"]
    assert oracle.messages(patterns, "20.1")["user-with-target"] == "Can not combine"


def test_prefix_scheme_on_debian_by_release():
    debian = ("posix_home", "posix_local", "posix_prefix", "posix_user")
    assert oracle.prefix_scheme("25.3", debian) == "posix_local"
    assert oracle.prefix_scheme("26.3", debian) == "posix_prefix"
    assert oracle.prefix_scheme("25.3", ("posix_home", "posix_prefix")) == "posix_prefix"
