"""Scenario files are data: every malformed one is a ScenarioError naming it,
nothing outside the scenario directory is read, and nothing read is echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_installperm import ScenarioError
from pytest_installperm.scenarios import MAX_BYTES, load_dir

VALID = """name = "{name}"
description = "a valid scenario"

[environment]
kind = "system"
locked = ["system"]

[request]

[expect]
outcome = "user"
"""
SECRET = "s3cr3t-root-only-content"


def _dir(tmp_path: Path) -> Path:
    directory = tmp_path / "scenarios"
    directory.mkdir()
    return directory


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_symlink_out_of_the_directory_is_refused_unread(tmp_path: Path, mode: int) -> None:
    directory = _dir(tmp_path)
    secret = tmp_path / "secret.toml"
    secret.write_text(f'name = "{SECRET}"\n')
    secret.chmod(mode)
    os.symlink(secret, directory / "leak.toml")
    with pytest.raises(ScenarioError) as caught:
        load_dir(directory)
    message = str(caught.value)
    assert "outside the scenario directory" in message and "leak.toml" in message
    assert SECRET not in message


def test_symlink_through_a_linked_directory_is_refused(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.toml").write_text(f'name = "{SECRET}"\n')
    os.symlink(outside, directory / "sub")
    os.symlink("sub/x.toml", directory / "x.toml")
    with pytest.raises(ScenarioError, match="outside the scenario directory") as caught:
        load_dir(directory)
    assert SECRET not in str(caught.value)


def test_symlink_inside_the_directory_is_read(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    (directory / "real.txt").write_text(VALID.format(name="alias"))
    os.symlink("real.txt", directory / "alias.toml")
    assert [s.name for s in load_dir(directory)] == ["alias"]


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
        "x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
        "x = " + "[" * 20 + "]" * 20 + "\n",  # parses, but deeper than any scenario
    ],
    ids=["arrays", "inline-tables", "moderate"],
)
def test_deep_nesting_is_a_scenario_error(tmp_path: Path, text: str) -> None:
    directory = _dir(tmp_path)
    (directory / "deep.toml").write_text(text)
    with pytest.raises(ScenarioError, match=r"deep.toml: .*(nest|deep)"):
        load_dir(directory)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(b'name = "\xff\xfe"\n'), "not UTF-8"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.write_bytes(b"#" * (MAX_BYTES + 1)), "at most"),
        (lambda p: p.write_text("name = 1\n"), "name"),
        (lambda p: p.write_text('name = "bad"\n[environment]\nlocked = 5\n'), "bad.toml"),
        (lambda p: p.write_text('name = "bad"\ndescription = "d"\nenvironment = []\n'), "bad"),
    ],
    ids=["binary", "directory", "fifo", "huge", "wrong-type", "locked-int", "table-array"],
)
def test_malformed_file_is_a_scenario_error(tmp_path: Path, make: object, expected: str) -> None:
    directory = _dir(tmp_path)
    path = directory / "bad.toml"
    make(path)  # type: ignore[operator]
    with pytest.raises(ScenarioError) as caught:
        load_dir(directory)
    assert "bad.toml" in str(caught.value) and expected in str(caught.value), caught.value
