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
    "packaging.tags",
    "pytest_installperm.fakefs",
    "pytest_installperm.fakefs_layouts",
    "pytest_installperm.environment",
    "pytest_installperm.session",
    "pytest_installperm.installers",
    "pytest_installperm.matrix",
    "pytest_installperm.placement",
    "pytest_installperm.wheels",
    "pytest_installperm.backends.contain",
)


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys, json; {code}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def test_importing_the_plugin_loads_none_of_what_only_fixtures_need() -> None:
    loaded = _loaded_after("import pytest_installperm.plugin")
    assert "pytest_installperm.plugin" in loaded
    assert sorted(name for name in LAZY if name in loaded) == []


@pytest.mark.parametrize(
    ("name", "module"),
    [("InstallPerm", "pytest_installperm.environment"), ("MakeWheel", "pytest_installperm.wheels")],
)
def test_exported_names_load_on_first_use(name: str, module: str) -> None:
    loaded = _loaded_after(f"import pytest_installperm as p; p.{name}")
    assert module in loaded
    assert "pyfakefs" not in loaded
