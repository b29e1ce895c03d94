"""The parent never executes, imports or follows what a child could have
written: a child that replaces its interpreter (and pip's script) with a
trap gets nothing when the verdicts, the scheme queries and the teardown run.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm, PlacementError


@pytest.mark.parametrize("kind", ["system", "venv"])
def test_replaced_interpreter_is_never_run_by_the_parent(
    installperm: InstallPerm, make_wheel: Callable[..., Path], tmp_path: Path, kind: str
) -> None:
    wheel = make_wheel("demo", purelib={"demo/__init__.py": "A = 1\n"})
    build = installperm.venv if kind == "venv" else installperm.system
    # a PEP 668 marker (Debian's interpreters) is not what this test is about; in
    # place the interpreter is the real one, out of the child's reach: relocated
    env = (
        build(locked=())
        if kind == "venv"
        else build(locked=(), externally_managed=False, mode="relocated")
    )
    canary = env.root.parent / f"parent-ran-{os.getpid()}-{kind}"
    trap = f'#!/bin/sh\necho "$(id -u)" > {canary}\n'
    targets = [env.python, env.paths("system")["scripts"] / "pip"]
    code = "import os, sys\n" + "".join(
        f"p = {str(t)!r}\nif os.path.lexists(p): os.unlink(p)\n"
        f"open(p, 'w').write({trap!r}); os.chmod(p, 0o755)\n"
        for t in targets
    )
    installed = env.pip("install", "--no-index", "--no-deps", wheel)
    assert installed.returncode == 0, installed.describe()
    result = env.run([env.python, "-c", code])
    assert result.returncode == 0, result.describe()
    assert stat.S_IMODE(os.stat(env.python).st_mode) == 0o755  # the trap is in place
    try:
        # everything a test (or the matrix) asks of the parent after a run
        for scheme in ("system", "user"):
            dict(env.paths(scheme))
        dict(env.paths("prefix", base=env.sandbox.work / "prefix"))
        dict(env.paths("target", base=env.sandbox.work / "target"))
        for check in (
            lambda: installed.assert_installed(wheel, scheme="system"),
            lambda: installed.assert_not_installed(wheel),
            installed.assert_no_residue,
            lambda: result.assert_untouched("user"),
            result.assert_no_residue,
        ):
            with contextlib.suppress(PlacementError):  # a verdict is fine; a run is not
                check()
        assert not canary.exists(), f"the parent ran the child's trap as uid {canary.read_text()}"
    finally:
        installperm.close()
        assert not canary.exists()
        canary.unlink(missing_ok=True)
