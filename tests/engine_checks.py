"""Checks shared by the root tests and the inner, unprivileged pytest runs."""

from __future__ import annotations

from pathlib import Path

from pytest_installperm import Environment, RunResult

FALLBACK = "Defaulting to user installation because normal site-packages is not writeable"


def _under(paths: set[Path], top: Path) -> set[Path]:
    return {p for p in paths if p == top or top in p.parents}


def check_pip_fell_back(env: Environment, result: RunResult) -> None:
    """Every created file is in the user scheme; the system scheme is untouched."""
    assert result.returncode == 0, result.describe()
    assert FALLBACK in result.stdout
    user, system = env.paths("user"), env.paths("system")
    package = user["purelib"] / "demo" / "__init__.py"
    script = user["scripts"] / "demo-cli"
    assert package.is_file() and script.is_file(), result.changes
    assert script.read_text().startswith(f"#!{env.python}")
    assert not result.changes.under("system"), result.changes.under("system")
    created_here = _under(set(result.changes.created), env.userbase)
    assert created_here, result.changes
    elsewhere = {p for p in result.changes.created if env.role_of(p) not in ("cache", "tmp")}
    assert elsewhere <= created_here, sorted(elsewhere - created_here)
    assert not result.outside, sorted(result.outside)
    assert not any(system[k] in p.parents for p in result.changes.all for k in system)


def check_uv_denied(env: Environment, result: RunResult) -> None:
    assert result.returncode != 0, result.describe()
    assert "Permission denied (os error 13)" in result.stderr
    assert not result.changes.under("system"), result.changes.under("system")
    assert not result.changes.under("user"), result.changes.under("user")
