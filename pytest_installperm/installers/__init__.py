"""Installers under test: the presets (pip, uv, installer) and user templates.

An installer turns a scenario's abstract :class:`~pytest_installperm.scenarios.Request`
into its own command line. What it cannot express (uv has no ``--user``) is an
:class:`Unsupported` with a reason, which the matrix reports as a skip, never as
a pass. A preset also declares what it needs (programs, libraries, isolation
variables) and what it knows (messages, usage errors, *declared divergences*:
differences from pip that the installer documents as intended, which the matrix
shows as xfails with the reason instead of failures). One module per preset;
:mod:`~pytest_installperm.installers.registry` says how presets are registered.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_installperm.installers.base import Command, Context, Installer, Unsupported
from pytest_installperm.installers.registry import Registry, default_registry
from pytest_installperm.installers.template import (
    INHERITS,
    NAME,
    TemplateInstaller,
    check_template,
)


def parse(spec: str, registry: Registry | None = None) -> Installer:
    """``NAME`` (a preset), ``NAME==VERSION``, ``NAME@PATH``, ``NAME=TEMPLATE`` or
    ``NAME=PRESET:TEMPLATE``; pytest.UsageError otherwise."""
    presets = registry if registry is not None else default_registry()
    versioned = _versioned(spec, presets)
    if versioned is not None:
        return versioned
    name, sep, template = spec.partition("=")
    name = name.strip()
    if not sep:
        if name not in presets:
            raise pytest.UsageError(
                f"--installperm-installer={spec!r}: unknown preset {name!r}; presets are "
                f"{', '.join(presets.names())}, or give NAME=TEMPLATE"
            )
        return presets.make(name)
    if not NAME.fullmatch(name):
        raise pytest.UsageError(
            f"--installperm-installer={spec!r}: the name {name!r} must be "
            "letters, digits, '.', '_' or '-'"
        )
    base = None
    inherits = INHERITS.match(template)
    if inherits is not None:
        if inherits[1] not in presets:
            raise pytest.UsageError(
                f"--installperm-installer={spec!r}: unknown preset {inherits[1]!r} to "
                f"inherit from; presets are {', '.join(presets.names())}"
            )
        base = presets.make(inherits[1])
        template = template[inherits.end() :]
    check_template(spec, template)
    return TemplateInstaller(name, template, base)


def _versioned(spec: str, presets: Registry) -> Installer | None:
    """A preset at a release (``pip==24.0``) or from a path (``uv@/opt/uv``), or None.

    The release is fetched (or its cached copy verified) and the path checked
    now, so that an installer that cannot be had fails the session at once.
    """
    from pytest_installperm import releases

    try:
        origin = releases.parse_origin(spec)
        if origin is None:
            return None
        if origin.name not in presets:
            raise releases.ReleaseError(
                f"unknown preset {origin.name!r}; presets are {', '.join(presets.names())}"
            )
        installer = presets.make(origin.name)
        if installer.release_constraints is None:
            releases.locate(origin)
        else:
            from pytest_installperm.toolvenvs import source_of

            source_of(origin)
    except releases.ReleaseError as exc:
        raise pytest.UsageError(f"--installperm-installer={spec!r}: {exc}") from None
    installer.name = origin.describe()
    installer.origin = origin
    return installer


def parse_all(specs: Sequence[str], registry: Registry | None = None) -> list[Installer]:
    """Parse every spec; names must be unique. Default: pip alone."""
    presets = registry if registry is not None else default_registry()
    found: list[Installer] = []
    for spec in specs or ["pip"]:
        installer = parse(spec, presets)
        if any(i.name == installer.name for i in found):
            raise pytest.UsageError(
                f"--installperm-installer: {installer.name!r} is given "
                "twice; each installer needs a unique name"
            )
        found.append(installer)
    return found


__all__ = [
    "Command",
    "Context",
    "Installer",
    "Registry",
    "TemplateInstaller",
    "Unsupported",
    "default_registry",
    "parse",
    "parse_all",
]
