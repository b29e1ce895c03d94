"""``assert_not_installed``: no file and no dist-info of a wheel anywhere."""

from __future__ import annotations

import os

from pytest_installperm import safefs
from pytest_installperm.placement.destinations import Scheme, sites_of
from pytest_installperm.placement.protocol import Result
from pytest_installperm.placement.records import dist_infos, in_scratch, written
from pytest_installperm.placement.table import Row, raise_failure, require_started, table
from pytest_installperm.wheels import read_wheel


def assert_not_installed(result: Result, wheel: str | os.PathLike[str]) -> None:
    """No file of ``wheel`` exists anywhere in the sandbox, and no dist-info of it.

    "Of the wheel" means: a dist-info of this project and version in any site
    of the environment (or anywhere this run created one), or a file this run
    created or modified whose path ends with a member's path in its scheme,
    unless the RECORD of another release lists it (an upgrade's new files are
    not the old wheel's). Installer caches, temporary files and staged inputs
    do not count.
    """
    __tracebackhide__ = True
    require_started("assert_not_installed", result)
    layout = read_wheel(wheel)
    env = result.environment
    changed = written(result.changes)
    sites = [s for role in ("system", "user") for s in sites_of(Scheme(role, env.paths(role)))]
    sites += [p.parent for p in changed if p.name.endswith(".dist-info") and not in_scratch(env, p)]
    infos = dist_infos(sites, env.root)
    rows = [
        Row(d.path, "installed: a dist-info of this release")
        for d in infos
        if d.same_release(layout)
    ]
    others = {p for d in infos if not d.same_release(layout) for p in d.record}
    suffixes = {("bin/" + m.path) if m.scheme == "scripts" else m.path: m for m in layout.members}
    for path in sorted(changed):
        if in_scratch(env, path) or not safefs.is_file(env.root, path) or path in others:
            continue
        for suffix in suffixes:
            if str(path).endswith("/" + suffix):
                rows.append(Row(path, f"written by this run: {suffix}"))
                break
    if rows:
        raise_failure(
            f"{layout.label} is installed, at least in part: {len(set(rows))} paths",
            result,
            table(rows, env.root, "path"),
        )


__all__ = [
    "assert_not_installed",
]
