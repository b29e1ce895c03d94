"""Installing a wheel as a system package manager would, for ``preinstalled=``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

from pytest_installperm.errors import WheelError
from pytest_installperm.wheels.layout import WheelLayout
from pytest_installperm.wheels.read import read_wheel


def install_wheel(
    wheel: str | os.PathLike[str],
    scheme: Mapping[str, Path],
    python: Path,
    *,
    installer: str = "installperm",
) -> WheelLayout:
    """Install ``wheel`` into ``scheme`` with ``installer``, owned by this process.

    Used for ``preinstalled=`` before a lock: files 0644, directories and
    scripts 0755, whatever the umask, like a distribution package. A corrupt
    wheel is refused: a preinstalled package must be exactly what it claims.
    """
    layout = read_wheel(wheel)
    if layout.corrupt:
        bad = ", ".join(
            f"{m.path} (RECORD {m.record_hash}, content {m.content_hash})" for m in layout.corrupt
        )
        raise WheelError(
            f"{layout.path}: cannot preinstall a wheel whose RECORD hashes are wrong: {bad}"
        )
    targets = {k: str(v) for k, v in scheme.items()}
    targets["headers"] = str(Path(scheme["headers"]) / layout.project)
    destination = SchemeDictionaryDestination(targets, interpreter=str(python), script_kind="posix")
    with WheelFile.open(layout.path) as source:
        try:
            install(
                source, destination, additional_metadata={"INSTALLER": f"{installer}\n".encode()}
            )
        except FileExistsError as exc:
            raise WheelError(
                f"{layout.path}: cannot preinstall: {exc} (another preinstalled "
                "wheel already wrote it)"
            ) from None
    for path, member in layout.destinations(scheme).items():
        _fix_modes(path, Path(scheme[member.scheme]), executable=member.scheme == "scripts")
    site = Path(scheme[layout.root_scheme]) / layout.dist_info
    for name in os.listdir(site):
        _fix_modes(site / name, Path(scheme[layout.root_scheme]), executable=False)
    return layout


def _fix_modes(path: Path, top: Path, *, executable: bool) -> None:
    """0644/0755 on ``path`` and 0755 on its directories up to ``top``."""
    os.chmod(path, 0o755 if executable else 0o644)
    parent = path.parent
    while parent != top and top in parent.parents:
        os.chmod(parent, 0o755)
        parent = parent.parent


__all__ = [
    "install_wheel",
]
