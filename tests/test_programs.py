"""Installer programs from wherever the user installed them, run by the child.

The case that matters is root: a Python tool in a venv under a 0700 directory
(``/root``) is unreachable for the dropped uid, so the session builds a readable
program venv for it. As a normal user the same copy runs as the same user.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm
from pytest_installperm.cache import TEMPLATES
from pytest_installperm.errors import InterpreterError
from pytest_installperm.fixtures import get_session
from pytest_installperm.interpreter import running_base
from pytest_installperm.programs import (
    ProgramError,
    entry_module,
    make_runnable,
    shebang_python,
)
from pytest_installperm.session import Session
from pytest_installperm.wheels import install_wheel

GREET = (
    "import sys\n"
    "import greet_helper\n"
    "def main():\n"
    "    print('greet', greet_helper.WORD, sys.prefix, sys.flags.no_user_site)\n"
)


def _hidden_tool(where: Path, make_wheel) -> Path:  # type: ignore[no-untyped-def]
    """A venv under a 0700 directory with a tool ``greet`` that needs ``greet-helper``."""
    hidden = where / "hidden"
    hidden.mkdir(mode=0o700)
    venv = hidden / "venv"
    subprocess.run(
        [str(running_base()), "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
    )
    python = venv / "bin" / "python"
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    scheme = {
        "purelib": site,
        "platlib": site,
        "scripts": venv / "bin",
        "data": venv,
        "headers": venv / "include",
    }
    helper = make_wheel("greet-helper", purelib={"greet_helper/__init__.py": "WORD = 'hi'\n"})
    tool = make_wheel(
        "greet", purelib={"greet/__init__.py": GREET}, console_scripts={"greet": "greet:main"}
    )
    unused = make_wheel("greet-unused", purelib={"greet_unused/__init__.py": ""})
    for wheel in (helper, tool, unused):
        install_wheel(wheel, scheme, python)
    metadata = site / "greet-1.0.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text() + "Requires-Dist: greet-helper\n")
    return venv / "bin" / "greet"


def _runnable(request: pytest.FixtureRequest, script: Path) -> Path:
    return _made_by(get_session(request.config), script)


def _made_by(session: Session, script: Path) -> Path:
    return make_runnable(
        script,
        session.root.new_dir("test-tools-"),
        cached=functools.partial(session._cached_at, readable=True),
        template_of=lambda base: session.template(session.base(base), readable=True),
    )


def test_a_tool_under_a_0700_directory_runs_as_the_child(
    installperm, make_wheel, tmp_path, request
):
    script = _hidden_tool(tmp_path, make_wheel)
    env = installperm.system(locked=("system",), externally_managed=False)
    copy = _runnable(request, script)
    result = env.run([copy])
    assert result.returncode == 0, result.describe()
    word, prefix = result.stdout.split()[1:3]
    assert word == "hi"  # its requirement came along
    assert not Path(prefix).is_relative_to(tmp_path)  # a venv of its own, readable
    assert (Path(prefix) / "lib").exists()
    site = next(Path(prefix).glob("lib/python*/site-packages"))
    assert sorted(p.name for p in site.iterdir() if p.suffix != ".pth") == [
        "greet",
        "greet-1.0.dist-info",
        "greet_helper",
        "greet_helper-1.0.dist-info",
    ]  # exactly the closure: not the venv's other packages
    result.assert_untouched("system")
    if env.backend == "privdrop":
        # The original is unreachable for the dropped uid: the copy is what runs.
        original = env.run([script])
        assert original.returncode != 0
        assert "Permission denied" in original.stderr


def test_a_binary_is_copied_as_it_is(request, tmp_path):
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF not really\n")
    copy = _runnable(request, binary)
    assert copy.read_bytes() == binary.read_bytes()
    assert os.stat(copy).st_mode & 0o777 == 0o755
    assert shebang_python(binary) is None


def test_a_script_without_an_entry_point_is_refused(tmp_path):
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/python3\nprint('hi')\n")
    assert shebang_python(script) == Path("/usr/bin/python3")
    with pytest.raises(ProgramError, match=r"no 'from MODULE import' line") as caught:
        entry_module(script)
    assert isinstance(caught.value, OSError)
    assert str(script) in str(caught.value)


def test_a_tool_whose_interpreter_is_gone_is_refused(request, tmp_path):
    script = tmp_path / "tool"
    script.write_text("#!/nonexistent/bin/python3\nfrom tool import main\nmain()\n")
    with pytest.raises((ProgramError, InterpreterError), match=r"/nonexistent/bin/python3"):
        _runnable(request, script)


def _cross_session(cache_dir: Path, script: Path) -> tuple[Path, int]:
    """In a fresh session: the program's copy, the inode of its cache tree, and
    whether the copy runs as the child."""
    session = Session(cache_dir=cache_dir)
    factory = InstallPerm(session)
    try:
        entry = _made_by(session, script)
        tree = Path(os.path.realpath(entry))
        env = factory.system(externally_managed=False)
        result = env.run([entry])
        assert result.returncode == 0, result.describe()
        entry_dir = next(p for p in tree.parents if p.parent.name == TEMPLATES)
        return tree, entry_dir.stat().st_ino
    finally:
        factory.close()
        session.close()


def test_a_tool_copy_is_kept_across_sessions_and_remade_when_the_tool_changes(
    make_wheel, tmp_path, request
):
    cache_dir = get_session(request.config).root.new_dir("cache-") / "plugin-cache"
    script = _hidden_tool(tmp_path, make_wheel)
    first, inode = _cross_session(cache_dir, script)
    assert cache_dir in first.parents  # linked from the persistent cache
    again, same = _cross_session(cache_dir, script)
    assert (again, same) == (first, inode), "a warm session copied the tool again"
    site = next(script.parent.parent.glob("lib/python*/site-packages"))
    (site / "another-1.0.dist-info").mkdir()  # a distribution installed beside it
    changed, _ = _cross_session(cache_dir, script)
    assert changed != first  # a new entry for the changed tool


def test_a_binary_copy_is_kept_across_sessions(request, tmp_path):
    cache_dir = get_session(request.config).root.new_dir("cache-") / "plugin-cache"
    binary = tmp_path / "tool"
    binary.write_text("#!/bin/sh\necho tool\n")
    os.chmod(binary, 0o755)
    first, inode = _cross_session(cache_dir, binary)
    assert _cross_session(cache_dir, binary) == (first, inode)
    assert first.read_bytes() == binary.read_bytes()
