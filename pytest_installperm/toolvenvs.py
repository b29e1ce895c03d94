"""Python tools at a release or from a path, with their dependencies: ``poetry==X``, ``pdm@WHEEL``.

:mod:`.releases` fetches one wheel, which is all pip and uv need. poetry, pdm,
pipx and hatch need their requirements too, resolved for the interpreter they
run on. So a tool release is built into a venv of its own:

1. the tool's wheel (the verified release, or the wheel given by path) and the
   wheels of everything it requires are downloaded by this machine's own pip
   (``python -m pip --python BASE download --only-binary=:all:``: the index and
   configuration the host's pip uses, the base interpreter's markers and tags,
   and no build code run), under the preset's constraints (pdm: ``hishel<2``);
2. every wheel's sha256 is recorded in the tree (``wheels.json``);
3. a relocated copy of the base interpreter (from its readable template) gets a
   venv; the wheels are installed into it with ``installer`` and compiled by the
   base itself, since a child cannot write bytecode there;
4. ``bin/NAME`` runs the tool from that venv, finding a shared ``libpython``
   through ``LD_LIBRARY_PATH`` (the base's RUNPATH may point into ``/root``).

The tree is built once per tool, version (or wheel hash), constraints and base
interpreter into the persistent template cache (:mod:`.cache`: under its lock,
atomic rename, verified before every use, rebuilt when stale), so the dropped
uid can read it and no child can write it. Its paths are absolute, so it is
built for the place it will have (``final``), not the one it is built in.

``NAME@PATH`` for a tool is a wheel (built as above) or an installed tool: its
program (a console script whose ``#!`` names a Python) or the venv holding it
(``VENV/bin/NAME``), copied with exactly its distributions (:mod:`.programs`).
A source tree or checkout is refused with the path: build a wheel of it first.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from pytest_installperm.interpreter import Template, create_venv
from pytest_installperm.releases import DOWNLOAD_TIMEOUT, Code, Origin, ReleaseError, sha256_of

#: The record of the wheels a tool venv was built from: file name -> sha256.
WHEELS_RECORD = "wheels.json"
#: How long compiling a tool's venv may take.
COMPILE_TIMEOUT = 600


@dataclass(frozen=True)
class ToolSource:
    """What ``NAME==X`` or ``NAME@PATH`` names for a tool: ``"wheel"`` (a release's
    verified wheel, or one given by path) or ``"installed"`` (the tool's program)."""

    kind: str
    path: Path


def source_of(origin: Origin, *, cache: Path | None = None) -> ToolSource:
    """Where a tool's code comes from; ReleaseError naming the path otherwise.

    A release is fetched (or its cached wheel verified) now, so a version the
    index does not have fails the session at once.
    """
    from pytest_installperm.releases import fetch

    if origin.version is not None:
        return ToolSource("wheel", fetch(origin.name, origin.version, cache=cache).wheel)
    assert origin.path is not None
    path, name = origin.path, origin.name
    if path.is_file() and path.suffix == ".whl":
        project = canonicalize_name(path.name.split("-", 1)[0])
        if project != canonicalize_name(name):
            raise ReleaseError(
                f"{origin.describe()}: {path} is a wheel of {project!r}, not of {name!r}"
            )
        return ToolSource("wheel", path)
    program = path / "bin" / name if path.is_dir() else path
    if program.is_file():
        _check_program(origin, program)
        return ToolSource("installed", program)
    if not path.exists():
        why = "does not exist"
    elif path.is_dir():
        why = (
            f"is a directory without bin/{name} (a source tree or checkout is not supported "
            f"for {name}: build a wheel of it, `python -m build --wheel`, and give that)"
        )
    else:
        why = "is neither a wheel nor a program"
    raise ReleaseError(
        f"{origin.describe()}: {path} {why}; {name}@PATH takes a wheel of {name}, "
        f"its program (VENV/bin/{name}) or the venv it is installed in"
    )


def _check_program(origin: Origin, program: Path) -> None:
    from pytest_installperm.programs import ProgramError, entry_module, shebang_python

    if shebang_python(program) is None:
        raise ReleaseError(
            f"{origin.describe()}: {program} is not a Python console script (its first "
            f"line names no Python interpreter), so it is not {origin.name}"
        )
    try:
        module = entry_module(program)
    except ProgramError as exc:
        raise ReleaseError(f"{origin.describe()}: {exc}") from None
    if module.split(".")[0] != origin.name.replace("-", "_"):
        raise ReleaseError(
            f"{origin.describe()}: {program} runs the module {module!r}, not {origin.name}"
        )


def build_key(origin: Origin, source: ToolSource, constraints: Sequence[str]) -> dict[str, object]:
    """What a built tool venv depends on, besides its base interpreter."""
    from pytest_installperm.cache import identity

    return {
        "builder": identity(Path(__file__)),
        "tool": canonicalize_name(origin.name),
        "wheel": [source.path.name, sha256_of(source.path)],
        "constraints": sorted(constraints),
    }


def build(
    tree: Path,
    final: Path,
    *,
    name: str,
    wheel: Path,
    constraints: Sequence[str],
    template: Template,
    env: Mapping[str, str] | None = None,
    host_python: str = sys.executable,
) -> None:
    """Build ``name``'s venv from ``wheel`` into ``tree``, for use at ``final``."""
    from pytest_installperm.programs import entry_point
    from pytest_installperm.wheels import install_wheel

    tree.mkdir(parents=True)
    wheels = tree / "wheels"
    wheels.mkdir()
    _download(name, wheel, wheels, constraints, template, env, host_python)
    record = {w.name: sha256_of(w) for w in sorted(wheels.glob("*.whl"))}
    (tree / WHEELS_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    version = template.base.version
    template.relocate(tree / "base", externally_managed=False)
    base_python = tree / "base" / "bin" / template.base.binary_name
    final_base = final / "base" / "bin" / template.base.binary_name
    venv_python = create_venv(tree / "venv", final_base, version, system_site_packages=False)
    site = tree / "venv" / "lib" / f"python{version}" / "site-packages"
    headers = tree / "venv" / "include" / "site" / f"python{version}"
    scheme = {"purelib": site, "platlib": site, "scripts": venv_python.parent}
    scheme |= {"data": tree / "venv", "headers": headers}
    for found in sorted(wheels.glob("*.whl")):
        install_wheel(found, scheme, final / venv_python.relative_to(tree))
    for path in sorted(wheels.iterdir()):
        path.unlink()
    wheels.rmdir()
    _compile(base_python, scheme["purelib"], final / scheme["purelib"].relative_to(tree), template)
    script = tree / "venv" / "bin" / name
    if not script.is_file():
        raise ReleaseError(f"{wheel}: it installs no program {name!r} (no console script)")
    (tree / "bin").mkdir()
    entry_point(tree / "bin" / name, final / "venv" / "bin" / name, template.libdir)


def _download(
    name: str,
    wheel: Path,
    dest: Path,
    constraints: Sequence[str],
    template: Template,
    env: Mapping[str, str] | None,
    host_python: str,
) -> None:
    argv = [host_python, "-m", "pip", "--python", str(template.base.executable), "download"]
    argv += ["--only-binary=:all:", "--dest", str(dest)]
    if constraints:
        pins = dest.parent / "constraints.txt"
        pins.write_text("".join(f"{c}\n" for c in sorted(constraints)))
        argv += ["--constraint", str(pins)]
    argv.append(str(wheel))
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=dict(os.environ if env is None else env),
            timeout=DOWNLOAD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ReleaseError(
            f"{name} ({wheel.name}): its dependencies did not download in {DOWNLOAD_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise ReleaseError(
            f"{name} ({wheel.name}): this machine's pip ({host_python} -m pip download) could "
            f"not get its dependencies for {template.base.executable} from its configured "
            f"index (exit status {done.returncode}): {' | '.join(lines[-3:]) or '(no output)'}"
        )


def _compile(python: Path, site: Path, final_site: Path, template: Template) -> None:
    """Bytecode for the base's own Python, naming the sources where they will be."""
    env = {"PATH": os.defpath, "LC_ALL": "C.UTF-8"}
    if template.libdir is not None:
        env["LD_LIBRARY_PATH"] = str(template.libdir)
    argv = [str(python), "-I", "-m", "compileall", "-q", "-j", "1"]
    argv += ["-s", str(site), "-p", str(final_site), str(site)]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=COMPILE_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise ReleaseError(
            f"compiling {site} with {python} failed (exit status {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-400:]}"
        )


def open_tool(origin: Origin, tree: Path) -> Code:
    """The :class:`~pytest_installperm.releases.Code` of a tool venv at ``tree``
    (built by :func:`build`, or copied by :func:`copy_installed`)."""
    sites = sorted((tree / "venv" / "lib").glob("python*/site-packages"))
    site = sites[0]
    version: str | None = None
    requires: SpecifierSet | None = None
    wanted = canonicalize_name(origin.name)
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if canonicalize_name(dist.name or "") == wanted:
            version = dist.version
            text = next(iter(dist.metadata.get_all("Requires-Python") or ()), None)
            try:
                requires = SpecifierSet(text) if text else None
            except InvalidSpecifier:
                requires = None
    return Code(origin, site, tree / "bin", version, requires)


def copy_installed(
    origin: Origin, program: Path, dest: Path, template_of: Callable[[Path], Template]
) -> Code:
    """A readable copy of an installed tool (its program and exactly its
    distributions, see :mod:`.programs`), as a :class:`Code`."""
    from pytest_installperm.programs import copy_python_tool, shebang_python

    python = shebang_python(program)
    assert python is not None  # source_of checked it
    made = copy_python_tool(program, python, dest, template_of)
    if made.script.name != origin.name:
        os.symlink(made.script.name, dest / "bin" / origin.name)
    return open_tool(origin, dest)


__all__ = ["ToolSource", "build", "build_key", "copy_installed", "open_tool", "source_of"]
