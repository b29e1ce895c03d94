"""Verdict options that real tools need: ``prefix:DIR``, optional metadata, a project.

INSTALLER and REQUESTED are optional in the installation specification
(``python -m installer`` writes neither by default), so only a caller who asks
for them gets them checked; a tool's project directory (its lock file, its log)
is not residue; ``--prefix DIR`` has a scheme of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_installperm import PlacementError, RoleError


@pytest.fixture
def wheel(make_wheel):  # type: ignore[no-untyped-def]
    return make_wheel("demo", console_scripts={"demo-cli": "demo:main"})


def _strip_optional_metadata(env) -> Path:  # type: ignore[no-untyped-def]
    """Remove INSTALLER and REQUESTED, as an installer that writes neither would."""
    info = Path(env.paths("system")["purelib"]) / "demo-1.0.dist-info"
    for name in ("INSTALLER", "REQUESTED"):
        with open(info / "RECORD") as record:
            lines = [ln for ln in record if not ln.startswith(f"demo-1.0.dist-info/{name},")]
        (info / "RECORD").write_text("".join(lines))
        (info / name).unlink()
    return info


def test_installer_and_requested_are_checked_only_on_request(installperm, wheel):
    env = installperm.system(locked=(), externally_managed=False)
    result = env.pip("install", wheel)
    assert result.returncode == 0, result.describe()
    result.assert_installed(wheel, scheme="system", require=("INSTALLER", "REQUESTED"))
    info = _strip_optional_metadata(env)
    result.assert_installed(wheel, scheme="system")
    with pytest.raises(PlacementError, match=r"2 of \d+ files wrong") as caught:
        result.assert_installed(wheel, scheme="system", require=("INSTALLER", "REQUESTED"))
    text = str(caught.value)
    for name in ("INSTALLER", "REQUESTED"):
        line = next(ln for ln in text.splitlines() if f"dist-info/{name}" in ln)
        assert line.split()[-1] == "missing", line
    with pytest.raises(ValueError, match=r"require='METADATA': not an optional metadata file"):
        result.assert_installed(wheel, scheme="system", require=("METADATA",))
    # The same rule in the residue verdict: a finished install without INSTALLER
    # is no residue, unless INSTALLER is asked for.
    failed = env.run(["sh", "-c", f"touch {info}/METADATA; exit 1"])
    failed.assert_no_residue()
    with pytest.raises(PlacementError, match=r"unfinished dist-info: no INSTALLER"):
        failed.assert_no_residue(require=("INSTALLER",))


def test_a_declared_script_missing_from_record_is_an_unfinished_install(installperm, wheel):
    env = installperm.system(locked=(), externally_managed=False)
    assert env.pip("install", wheel).returncode == 0
    info = _strip_optional_metadata(env)
    with open(info / "RECORD") as record:
        kept = [ln for ln in record if "demo-cli" not in ln]
    failed = env.run(["sh", "-c", f"printf '%s' '{''.join(kept)}' > {info}/RECORD; exit 1"])
    with pytest.raises(PlacementError) as caught:
        failed.assert_no_residue()
    assert "entry point script(s) never generated (not in RECORD): demo-cli" in str(caught.value)


def test_prefix_dir_is_a_scheme(installperm, wheel):
    env = installperm.system(locked=("system",), externally_managed=False)
    prefix = env.sandbox.work / "prefix"
    result = env.pip("install", "--prefix", prefix, wheel)
    assert result.returncode == 0, result.describe()
    result.assert_installed(wheel, scheme=f"prefix:{prefix}")
    with pytest.raises(PlacementError, match=r"not installed as expected in the system scheme"):
        result.assert_installed(wheel, scheme="system")
    with pytest.raises(PlacementError, match=r"in the target .* scheme"):
        result.assert_installed(wheel, scheme=f"target:{prefix}")
    with pytest.raises(RoleError, match=r"scheme='prefix:': give the directory"):
        result.assert_installed(wheel, scheme="prefix:")
    with pytest.raises(RoleError, match=r"'prefix:DIR' \(--prefix DIR\)"):
        result.assert_installed(wheel, scheme="nowhere")


def test_a_tools_project_files_are_not_residue(installperm, wheel):
    env = installperm.system(locked=("system",), externally_managed=False)
    project = env.sandbox.work
    site = Path(env.paths("user")["purelib"])
    script = "echo lock > tool.lock; mkdir -p .tool/log; echo failed > .tool/log/run.log; exit 1"
    result = env.run(["sh", "-c", script])
    assert result.returncode == 1
    with pytest.raises(PlacementError, match=r"orphan: listed in no RECORD") as caught:
        result.assert_no_residue()
    assert "work/tool.lock" in str(caught.value)
    result.assert_no_residue(project=project)
    # What lands in a site is residue wherever the project is.
    stray = env.run(["sh", "-c", f"mkdir -p {site}/demo && touch {site}/demo/x.py; exit 1"])
    with pytest.raises(PlacementError, match=r"demo/x\.py"):
        stray.assert_no_residue(project=env.home)
    assert os.path.isdir(project)
