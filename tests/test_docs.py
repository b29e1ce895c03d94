"""The pytest command lines the README and docs/ci.md tell users to run start.

Each one is run with ``--collect-only``: every option and ini value is checked
then, the installers are parsed and the scenario files loaded, so a renamed
option or a preset that no longer exists fails here, not in a user's CI.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: A line of a shell block that runs pytest, with ``\\`` continuations joined.
_COMMAND = re.compile(r"(?:^|&&\s*|\$run\s+)\.venv/bin/pytest((?:\s+\S+)*)")


def documented_commands(text: str) -> list[list[str]]:
    """pytest's arguments in every fenced shell or YAML block that runs it."""
    found = []
    for block in re.findall(r"```(?:sh|yaml)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            match = _COMMAND.search(line.strip())
            if match:
                found.append(shlex.split(match[1]))
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/ci.md"])
def test_every_documented_pytest_command_starts(pytester: pytest.Pytester, doc: str) -> None:
    commands = documented_commands((ROOT / doc).read_text())
    assert commands, f"no pytest command found in {doc}"
    for args in commands:
        result = pytester.runpytest(*args, "--collect-only", "-q", "-p", "no:cacheprovider")
        assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED), (
            f"{doc}: pytest {shlex.join(args)}\n{result.stdout.str()}\n{result.stderr.str()}"
        )


def test_the_readme_starts_with_the_two_commands_of_a_fresh_machine() -> None:
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first is not None
    lines = first[1].splitlines()
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'")
    assert "--installperm-installer=pip --installperm-installer=uv" in lines[0]
    assert lines[1] == ".venv/bin/pytest"
