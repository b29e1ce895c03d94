"""The verdicts: did every file of a wheel land where it belongs, and nowhere else?

Each verdict raises :class:`PlacementError` (an ``AssertionError``) with a
sorted table, one row per file: the path where the file was expected and what
was found there (``ok``, ``missing``, ``elsewhere: <path>``, ``hash mismatch:
expected X got Y``, ``extra``...), then the installer's exit status and the
last lines of its output. Paths are shown relative to the sandbox.

What a verdict reads from a result is the small :class:`Result` protocol below,
not the concrete :class:`~pytest_installperm.run.RunResult`, so that the
in-process (pyfakefs) mode can hand its own result objects to the same
functions. All filesystem access goes through ``os`` and ``open``, which
pyfakefs patches.

The rules, and why:

* **Expected files** come from the wheel, read by ``installer``
  (:func:`~pytest_installperm.wheels.read_wheel`). Content is compared with the
  hash the wheel's RECORD claims, so a corrupt wheel never passes.
  ``.data/scripts`` files must keep their bytes after the first line and have a
  shebang naming the environment's interpreter; entry-point launchers must
  exist, be executable, name the interpreter and import their module.
* **Installer metadata** is expected, not extra: the files in
  :data:`GENERATED_METADATA` inside the installed ``.dist-info``, bytecode
  caches of installed sources (``__pycache__/*.pyc``; pip writes them, uv does
  not), and uv's ``.lock`` at the root of a ``--target`` or venv.
* **The installed RECORD** must list every installed file, each with the hash
  of the bytes on disk, and every path it lists must exist.
* **Headers** go to ``<headers>/<project>``; pip spells the directory as the
  user typed the requirement (``Demo.Pkg``), uv canonically (``demo-pkg``), so
  any spelling with the same canonical name is accepted.
* **Changes, not state**, decide "elsewhere" and "extra": a file counts against
  a wheel only if this run created or modified it, so older versions and other
  distributions in the same site are never blamed on this install.
"""

from __future__ import annotations

from pytest_installperm.placement.compare import explain_comparison
from pytest_installperm.placement.destinations import (
    Scheme,
    destinations,
    prefix_scheme,
    resolve_scheme,
    target_scheme,
)
from pytest_installperm.placement.installed import assert_installed
from pytest_installperm.placement.not_installed import assert_not_installed
from pytest_installperm.placement.protocol import ChangesLike, EnvironmentLike, Result, SnapshotLike
from pytest_installperm.placement.records import (
    GENERATED_METADATA,
    DistInfo,
    dist_infos,
    read_dist_info,
)
from pytest_installperm.placement.residue import assert_no_residue
from pytest_installperm.placement.table import Row, table
from pytest_installperm.placement.untouched import assert_untouched

__all__ = [
    "GENERATED_METADATA",
    "ChangesLike",
    "DistInfo",
    "EnvironmentLike",
    "Result",
    "Row",
    "Scheme",
    "SnapshotLike",
    "assert_installed",
    "assert_no_residue",
    "assert_not_installed",
    "assert_untouched",
    "destinations",
    "dist_infos",
    "explain_comparison",
    "prefix_scheme",
    "read_dist_info",
    "resolve_scheme",
    "table",
    "target_scheme",
]
