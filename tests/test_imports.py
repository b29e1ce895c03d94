"""Importing the plugin is cheap: pytest does it in every session of every
project that has it installed, fixtures or not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Loaded only when a fixture, a verdict or --installperm asks for them.
LAZY = (
    "pyfakefs",
    "installer",
    "packaging",
    "tomllib",
    "ctypes",
    "subprocess",
    "pytest_installperm.fakefs",
    "pytest_installperm.fakefs_layouts",
    "pytest_installperm.environment",
    "pytest_installperm.session",
    "pytest_installperm.cache",
    "pytest_installperm.interpreter",
    "pytest_installperm.sandbox",
    "pytest_installperm.changes",
    "pytest_installperm.watch",
    "pytest_installperm.world",
    "pytest_installperm.installers",
    "pytest_installperm.matrix",
    "pytest_installperm.placement",
    "pytest_installperm.wheels",
    "pytest_installperm.backends",
    "pytest_installperm.locks",
    "pytest_installperm.releases",
    "pytest_installperm.programs",
    "pytest_installperm.oracle",
    "pytest_installperm.report",
    "pytest_installperm.scenarios",
)
#: What a session that uses no fixture loads of ours: the hooks, their options.
HOOKS_ONLY = {
    "pytest_installperm",
    "pytest_installperm.fixtures",
    "pytest_installperm.hookspec",
    "pytest_installperm.options",
    "pytest_installperm.plugin",
}


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys, json; {code}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def _lazy_in(loaded: set[str]) -> list[str]:
    return sorted(n for n in loaded if any(n == m or n.startswith(f"{m}.") for m in LAZY))


def test_importing_the_plugin_loads_none_of_what_only_fixtures_need() -> None:
    before = _loaded_after("import pytest")
    loaded = _loaded_after("import pytest, pytest_installperm.plugin")
    assert "pytest_installperm.plugin" in loaded
    # What pytest imports anyway (subprocess, on some versions) is not ours to defer.
    assert _lazy_in(loaded - before) == []


def test_a_session_that_uses_no_fixture_loads_only_the_hooks(pytester: pytest.Pytester) -> None:
    """A whole pytest run, hooks included (options are checked, markers added).
    pyfakefs's own plugin is turned off: it is installed with us, and would
    import pyfakefs whatever we do."""
    pytester.makeconftest(
        """
        import json, sys

        def pytest_sessionfinish(session):
            with open("modules.json", "w") as out:
                json.dump(sorted(sys.modules), out)
        """
    )
    pytester.makepyfile(test_nothing="def test_nothing():\n    assert len('ab') == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:fakefs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    loaded = set(json.loads((pytester.path / "modules.json").read_text()))
    ours = {n for n in loaded if n.split(".")[0] == "pytest_installperm"}
    assert sorted(ours - HOOKS_ONLY) == []
    assert "pytest_installperm.plugin" in ours
    assert [n for n in _lazy_in(loaded) if n.startswith(("pytest_installperm", "pyfakefs"))] == []


@pytest.mark.parametrize(
    ("name", "module"),
    [("InstallPerm", "pytest_installperm.environment"), ("MakeWheel", "pytest_installperm.wheels")],
)
def test_exported_names_load_on_first_use(name: str, module: str) -> None:
    loaded = _loaded_after(f"import pytest_installperm as p; p.{name}")
    assert module in loaded
    assert "pyfakefs" not in loaded
