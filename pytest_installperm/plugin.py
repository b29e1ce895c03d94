"""pytest hooks of pytest-installperm: options, ini mirrors, markers, cleanup."""

from __future__ import annotations

import pytest

from pytest_installperm.backends import BACKENDS
from pytest_installperm.fixtures import SESSION_KEY, installperm, installperm_fakefs, make_wheel

__all__ = ["installperm", "installperm_fakefs", "make_wheel"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("installperm", "installer permission testing")
    group.addoption(
        "--installperm-backend",
        dest="installperm_backend",
        choices=BACKENDS,
        default=None,
        help="how locks are enforced: auto (default), chmod (normal user), privdrop "
        "(root runs children as an unprivileged uid), mountns (read-only mounts)",
    )
    parser.addini("installperm_backend", "default for --installperm-backend", default="auto")
    group.addoption(
        "--installperm-uid",
        dest="installperm_uid",
        type=int,
        default=None,
        help="uid that children run as under the privdrop backend (default: nobody)",
    )
    parser.addini("installperm_uid", "default for --installperm-uid", default="")
    group.addoption(
        "--installperm-basetemp",
        dest="installperm_basetemp",
        default=None,
        help="directory for session roots (default: /dev/shm if it is an exec tmpfs, "
        "else TMPDIR)",
    )
    parser.addini("installperm_basetemp", "default for --installperm-basetemp", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "installperm: a test that runs installers against locked directories"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object,
                              right: object) -> list[str] | None:
    """Readable failures for ``==`` on a run's changes or result."""
    from pytest_installperm.placement import explain_comparison

    return explain_comparison(op, left, right)
