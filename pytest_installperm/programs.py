"""Installer programs made runnable by the child, wherever the user installed them.

A dropped uid cannot run a tool from a venv under ``/root`` (mode 0700): neither
its script, nor its packages, nor the interpreter its venv points at. Copying
the script alone works for a self-contained binary (uv), not for a Python tool
(poetry, pdm, pipx, hatch). For those the session builds a readable *program
venv*: a relocated copy of the tool's base interpreter (from the same readable
template the sandboxes use), a venv on it, and a copy of exactly the
distributions the tool imports (its own and their requirements, as its
metadata declares them, markers evaluated by the tool's own interpreter). The
script is rewritten to run that venv's interpreter, so the tool sees a venv of
its own, as it does where the user installed it.

The parent runs the tool's interpreter once, to ask which files to copy: it
is the user's installed tool, not something a child could have written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_installperm.cache import identity
from pytest_installperm.interpreter import Template, create_venv

#: Run by the tool's interpreter: its base, and every file of the distributions
#: the script's entry module needs, relative to the site directory holding them.
_CLOSURE = r"""
import importlib.metadata as md, json, os, re, sys, sysconfig
module = sys.argv[1]
by_module = md.packages_distributions()
names = by_module.get(module.split(".")[0], [])
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
def requires(dist, extras):
    for text in dist.requires or ():
        if Requirement is not None:
            req = Requirement(text)
            envs = [{"extra": e} for e in (extras or {""})]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                yield req.name, set(req.extras)
        else:
            name = re.match(r"[A-Za-z0-9._-]+", text)[0]
            if ";" not in text:
                yield name, set()
seen, todo, files = set(), [(n, set()) for n in names], []
while todo:
    name, extras = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if (key, frozenset(extras)) in seen:
        continue
    seen.add((key, frozenset(extras)))
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    todo.extend(requires(dist, extras))
    site = os.path.realpath(str(dist.locate_file("")))
    for f in dist.files or ():
        path = os.path.realpath(str(dist.locate_file(f)))
        if path.startswith(site + os.sep) and os.path.isfile(path):
            files.append([site, os.path.relpath(path, site)])
print(json.dumps({
    "base": os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
    "version": "%d.%d" % sys.version_info[:2],
    "dists": sorted({k for k, _ in seen}),
    "files": sorted(set(map(tuple, files))),
}))
"""


@dataclass(frozen=True)
class ProgramVenv:
    """A readable copy of one Python tool: its venv and its rewritten script."""

    script: Path
    venv: Path
    distributions: tuple[str, ...]


class ProgramError(OSError):
    """A program on PATH that cannot be made runnable by the child."""


def shebang_python(script: Path) -> Path | None:
    """The interpreter a ``#!`` script names, if it names a Python one."""
    try:
        with open(script, "rb") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    program = Path(words[0])
    return program if Path(program).name.startswith("python") else None


def entry_module(script: Path) -> str:
    """The module a console-script wrapper imports its entry point from."""
    text = script.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^from\s+([A-Za-z_][\w.]*)\s+import\s", text, re.MULTILINE)
    if found is None:
        raise ProgramError(
            f"program {script}: not a console-script wrapper (no 'from MODULE import' line), "
            "so which packages it needs cannot be told"
        )
    return found[1]


def closure(python: Path, module: str, *, what: str) -> dict[str, Any]:
    """Ask ``python`` for its base and the files of the distributions ``module`` needs."""
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", _CLOSURE, module],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"},
            check=False,
        )
    except OSError as exc:
        raise ProgramError(f"{what}: its interpreter {python} cannot run: {exc}") from exc
    if out.returncode != 0:
        raise ProgramError(
            f"{what}: its interpreter {python} exited {out.returncode} when asked "
            f"for the tool's packages: {out.stderr.strip()[-400:]}"
        )
    facts: dict[str, Any] = json.loads(out.stdout)
    if not facts["files"]:
        raise ProgramError(f"{what}: no installed distribution provides its module {module!r}")
    return facts


def copy_files(facts: Mapping[str, Any], site: Path) -> None:
    """Copy a closure's files into ``site``, readable by anyone, bytecode included
    (a child cannot write caches here, and would otherwise recompile every run)."""
    for source_site, relative in facts["files"]:
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copy2(Path(source_site) / relative, target)
    for path in [site, *site.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def copy_python_tool(
    script: Path,
    python: Path,
    dest: Path,
    template_of: Callable[[Path], Template],
    *,
    final: Path | None = None,
) -> ProgramVenv:
    """Build ``dest`` as a readable venv running ``script``'s tool.

    ``template_of(base_executable)`` returns the session's readable template of
    the tool's base interpreter. The program to put on PATH is ``dest/bin/NAME``:
    a shell wrapper when the base needs its ``libpython`` found (its RUNPATH may
    point into an unreadable home), else the rewritten script itself. The
    venv names its own paths as they will be at ``final`` (default ``dest``):
    a cache entry is built elsewhere, then renamed.
    """
    at = dest if final is None else final
    facts = closure(python, entry_module(script), what=f"program {script}")
    template = template_of(Path(facts["base"]))
    base = template.relocate(dest / "base", externally_managed=False)
    version = facts["version"]
    venv_python = create_venv(
        dest / "venv", at / base.relative_to(dest), version, system_site_packages=False
    )
    copy_files(facts, dest / "venv" / "lib" / f"python{version}" / "site-packages")
    body = script.read_text(encoding="utf-8", errors="replace").split("\n", 1)[1]
    rewritten = dest / "venv" / "bin" / script.name
    rewritten.write_text(f"#!{at / venv_python.relative_to(dest)}\n{body}")
    os.chmod(rewritten, 0o755)
    (dest / "bin").mkdir()
    entry = dest / "bin" / script.name
    entry_point(entry, at / rewritten.relative_to(dest), template.libdir)
    return ProgramVenv(entry, dest / "venv", tuple(facts["dists"]))


def entry_point(entry: Path, script: Path, libdir: Path | None) -> None:
    """``entry`` runs ``script``: a symlink, or a shell wrapper when the base
    needs its ``libpython`` found (its RUNPATH may point into an unreadable home)."""
    if libdir is None:
        os.symlink(script, entry)
        return
    entry.write_text(
        f"#!/bin/sh\nLD_LIBRARY_PATH={shlex.quote(str(libdir))} "
        f'exec {shlex.quote(str(script))} "$@"\n'
    )
    os.chmod(entry, 0o755)


def copy_python_library(script: Path, python: Path, site: Path) -> tuple[str, ...]:
    """Copy the packages ``script``'s tool imports into ``site`` (for ``PYTHONPATH``)."""
    facts = closure(python, entry_module(script), what=f"program {script}")
    copy_files(facts, site)
    return tuple(facts["dists"])


#: ``cached(kind, key, build)``: the read-only tree for ``key``, made once by
#: ``build(tree, final)`` in the persistent cache (else in the session's root).
Cached = Callable[[str, dict[str, object], Callable[[Path, Path], None]], Path]


def python_identity(python: Path) -> list[object]:
    """What says a tool's interpreter and the distributions it sees are still
    the ones copied: its stat, and the stat of each site directory of its
    prefix (installing, upgrading or removing a distribution adds or removes an
    entry there, which changes the directory's mtime)."""
    prefix = Path(python).parent.parent
    sites = sorted(
        {
            *prefix.glob("lib/python3*/site-packages"),
            *prefix.glob("lib/python3*/dist-packages"),
            *prefix.glob("lib/python3/dist-packages"),
            *prefix.glob("local/lib/python3*/dist-packages"),
        }
    )
    try:
        return [identity(Path(python)), *(identity(site) for site in sites)]
    except OSError as exc:
        raise ProgramError(f"interpreter {python}: {exc.strerror or exc}") from exc


def make_runnable(
    found: Path,
    tools: Path,
    *,
    cached: Cached,
    template_of: Callable[[Path], Template],
) -> Path:
    """Put a runnable copy of the program ``found`` on the tools directory ``tools``.

    A Python console script gets a program venv (:func:`copy_python_tool`);
    anything else (a self-contained binary such as uv) is copied as it is. The
    copy is made once into ``cached``, keyed by what says the program is still
    the one copied (its stat; a Python tool's interpreter and site directories
    too), and linked from ``tools``. Returns the path in ``tools``.
    """
    entry = tools / found.name
    python = shebang_python(found)
    key: dict[str, object] = {"program": identity(found), "builder": identity(Path(__file__))}
    if python is None:
        tree = cached("program", key, lambda tree, _final: _copy_program(found, tree))
        os.symlink(tree / found.name, entry)
        return entry
    key["python"] = python_identity(python)
    # The base's template before the build, never inside it: a template comes
    # from the same cache, whose lock the build holds.
    template = template_of(Path(os.path.realpath(python)))

    def build(tree: Path, final: Path) -> None:
        copy_python_tool(found, python, tree, lambda _base: template, final=final)

    tree = cached("program", key, build)
    os.symlink(tree / "bin" / found.name, entry)
    return entry


def _copy_program(src: Path, tree: Path) -> None:
    tree.mkdir(parents=True)
    readable_program(src, tree / src.name)


def required(tools: Path, names: Sequence[str]) -> Path:
    """``tools``, once every program of ``names`` is in it; ProgramError naming
    the first one that is not installed here."""
    for name in names:
        if not os.path.lexists(tools / name):
            raise ProgramError(
                f"programs=({name!r},): no program {name!r} next to {sys.executable} or on "
                "PATH: install it (the test extra has poetry, pdm, pipx, hatch and uv)"
            )
    return tools


def readable_program(src: Path, dst: Path) -> None:
    """``dst``: a program any uid can run. A hard link when ``src`` already is
    one (never chmodded: the inode is the host's, e.g. a venv's ``bin/uv``),
    else a copy of our own made 0755."""
    if os.stat(src).st_mode & 0o005 == 0o005:
        _link_or_copy(src, dst)
        return
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
