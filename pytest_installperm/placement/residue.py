"""``assert_no_residue``: no trace of a half-finished install."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pytest_installperm import safefs
from pytest_installperm.placement.destinations import Scheme, sites_of
from pytest_installperm.placement.protocol import Result
from pytest_installperm.placement.records import (
    UV_LOCK,
    DistInfo,
    dist_infos,
    in_scratch,
    is_bytecode,
    required_metadata,
    unrecorded_scripts,
    written,
)
from pytest_installperm.placement.table import Row, raise_failure, require_started, table
from pytest_installperm.roles import is_under


def _broken(info: DistInfo, require: Iterable[str]) -> str | None:
    """Why a dist-info this run touched is not a finished install, or None."""
    if info.problem:
        return info.problem
    top = info.where()
    missing = sorted(p for p in info.record if not safefs.lexists(top, p) and p.suffix != ".pyc")
    reasons = []
    if missing:
        names = ", ".join(os.path.relpath(p, info.site) for p in missing)
        reasons.append(f"RECORD lists {len(missing)} missing file(s): {names}")
    scripts = unrecorded_scripts(info)
    if scripts:
        reasons.append(
            f"entry point script(s) never generated (not in RECORD): {', '.join(scripts)}"
        )
    reasons += [
        f"no {name}" for name in sorted(require) if not safefs.is_file(top, info.path / name)
    ]
    return "; ".join(reasons) or None


def assert_no_residue(
    result: Result,
    *,
    project: str | os.PathLike[str] | None = None,
    require: Iterable[str] = (),
) -> None:
    """No trace of a half-finished install is left in the environment.

    Residue is: a file this run wrote (outside caches and temp) that no
    finished dist-info's RECORD lists; a dist-info this run touched that has no
    RECORD, a RECORD naming files that do not exist, or a declared console
    script its RECORD does not list (or lacks a metadata file named in
    ``require``: INSTALLER and REQUESTED are optional); a ``~``-prefixed stash
    directory in a site; two dist-infos of one project in one site. Bytecode
    caches of existing sources are never residue, and neither is what a tool
    writes about its ``project`` directory (lock files, logs, its choice of
    interpreter), unless it lies in a site directory.
    """
    __tracebackhide__ = True
    require_started("assert_no_residue", result)
    wanted = required_metadata(require)
    own = Path(os.path.abspath(project)) if project is not None else None
    env = result.environment
    changes = result.changes
    changed = written(changes)
    sites = {s for role in ("system", "user") for s in sites_of(Scheme(role, env.paths(role)))}
    for path in changed | changes.deleted:
        if in_scratch(env, path):
            continue
        if path.name.endswith(".dist-info"):
            sites.add(path.parent)
        elif path.parent.name.endswith(".dist-info"):
            sites.add(path.parent.parent)
    lock_dirs = sites | {Path(env.paths(role)["data"]) for role in ("system", "user")}
    infos = dist_infos(sites, env.root)
    touched = {
        d.path
        for d in infos
        if any(is_under(p, d.path) for p in changed | changes.deleted)
        or any(p in changes.deleted for p in d.record)
    }
    rows: list[Row] = []
    broken: dict[Path, str] = {}
    for info in infos:
        why = _broken(info, wanted) if info.path in touched else None
        if why:
            broken[info.path] = why
            rows.append(Row(info.path, f"unfinished dist-info: {why}"))
    listed = {p for d in infos if d.path not in broken for p in d.record}
    listed_broken = {p: d for d in infos if d.path in broken for p in d.record}
    for path in sorted(changed):
        if (
            safefs.is_dir(env.root, path)
            or not safefs.lexists(env.root, path)
            or in_scratch(env, path)
            or is_bytecode(path)
            or path in listed
            or (path.name == UV_LOCK and path.parent in lock_dirs)
        ):
            continue
        if any(is_under(path, b) for b in broken):
            continue
        if own is not None and is_under(path, own) and not any(is_under(path, s) for s in sites):
            continue
        owner = listed_broken.get(path)
        rows.append(
            Row(
                path,
                f"listed only by unfinished {owner.path.name}"
                if owner
                else "orphan: listed in no RECORD",
            )
        )
    for site in sorted(sites):
        rows += _site_residue(site, infos, env.root)
    if rows:
        raise_failure(
            f"residue of an unfinished install: {len(set(rows))} paths",
            result,
            table(rows, env.root, "path"),
        )


def _site_residue(site: Path, infos: list[DistInfo], root: Path) -> list[Row]:
    """Stash directories and duplicate dist-infos in one site directory."""
    rows: list[Row] = []
    names = sorted(safefs.listdir(root, site))
    rows += [
        Row(site / n, "stash left by an interrupted uninstall or upgrade")
        for n in names
        if n.startswith("~")
    ]
    by_project: dict[str, list[DistInfo]] = {}
    for info in infos:
        if info.site == site:
            by_project.setdefault(info.project, []).append(info)
    for project, group in sorted(by_project.items()):
        if len(group) > 1:
            versions = ", ".join(d.path.name for d in group)
            rows += [
                Row(d.path, f"one of {len(group)} dist-infos of {project}: {versions}")
                for d in group
            ]
    return rows


__all__ = [
    "assert_no_residue",
]
