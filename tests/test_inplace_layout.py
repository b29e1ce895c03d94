"""What in-place mode learns of a base interpreter once per session (which
real directories a sandbox is bound over), and that it learns it again when
the interpreter's directories change between two sandboxes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pytest_installperm import InstallPerm
from pytest_installperm.inplace import Layouts
from pytest_installperm.interpreter import BaseInterpreter


def pyenv_like(top: Path) -> tuple[BaseInterpreter, dict[str, Path]]:
    """A prefix laid out as pyenv's (data is the prefix, headers empty), and its scheme."""
    prefix = top / "prefix"
    stdlib = prefix / "lib" / "python3.11"
    site = stdlib / "site-packages"
    headers = prefix / "include" / "python3.11"
    for directory in (prefix / "bin", site, headers):
        directory.mkdir(parents=True)
    executable = prefix / "bin" / "python3.11"
    executable.write_bytes(b"")
    os.symlink("python3.11", prefix / "bin" / "python3")
    base = BaseInterpreter(executable, prefix, stdlib, "3.11", None)
    real = {
        "purelib": site,
        "platlib": site,
        "scripts": prefix / "bin",
        "data": prefix,
        "headers": headers,
    }
    return base, real


def test_a_layout_is_found_once_and_again_after_its_directories_change(tmp_path: Path) -> None:
    base, real = pyenv_like(tmp_path)
    scheme = {key: str(path) for key, path in real.items()}  # as the scheme probe reports it
    layouts = Layouts()
    first = layouts.of(base, scheme)
    assert not isinstance(first, str)
    assert first.targets == (real["purelib"], real["scripts"], real["headers"])
    assert first.left_real == (("data", base.prefix),)
    assert first.real == real
    assert [found.name for found, _target in first.seeds] == ["python3", "python3.11"]
    assert layouts.of(base, scheme) is first  # nothing changed: not read again

    (real["headers"] / "Python.h").write_text("")
    os.symlink("python3.11", real["scripts"] / "python")
    second = layouts.of(base, scheme)
    assert not isinstance(second, str)
    assert second.targets == (real["purelib"], real["scripts"])
    assert second.left_real == (("data", base.prefix), ("headers", real["headers"]))
    assert [found.name for found, _target in second.seeds] == ["python", "python3", "python3.11"]

    shutil.rmtree(real["purelib"])
    assert layouts.of(base, scheme) == (
        f"the real purelib directory {real['purelib']} is not a directory to bind over"
    )


def test_a_session_sees_the_base_change_between_two_system_calls(
    installperm: InstallPerm,
) -> None:
    """The same base asked for twice in one session, its site removed between:
    the second ``system()`` says so, the first did not."""
    other = installperm.system(mode="relocated", locked=())
    first = installperm.system(python=other.python, mode="auto", locked=())
    assert "is not a directory to bind over" not in first.mode.reason, first.describe()
    purelib = other.paths("system")["purelib"]
    shutil.rmtree(purelib)
    if other.paths("system")["data"] != other.prefix:  # Debian's prefix/local holds purelib
        shutil.rmtree(other.paths("system")["data"])
    again = installperm.system(python=other.python, mode="auto", locked=())
    assert again.mode.name == "relocated"
    assert again.mode.reason == (
        f"in place is not possible: the real purelib directory {purelib} is not a directory "
        "to bind over"
    )
