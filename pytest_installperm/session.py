"""Per-session state: the session directory, interpreter templates, the pip
copy (:mod:`.pip_copy`), installer tools, and scheme facts learned once per
base interpreter.

Everything here is built once per pytest session (per xdist worker) and then
shared, so that building one sandbox costs milliseconds: the expensive parts
(copying a stdlib, probing an interpreter's schemes) are paid once.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_installperm.backends import Backend, choose
from pytest_installperm.cache import (
    TREE,
    TemplateCache,
    default_cache_dir,
    identity,
    traversable_by_others,
)
from pytest_installperm.errors import InterpreterError, LockUnavailable
from pytest_installperm.inplace import Layouts
from pytest_installperm.interpreter import (
    BaseInterpreter,
    Template,
    create_venv,
    executable_of,
    from_layout,
    inspect,
    layout_key,
    query_layout,
    query_schemes,
    template_key,
)
from pytest_installperm.locks import LockSpec
from pytest_installperm.pip_copy import PipCopy, copy_pip
from pytest_installperm.sandbox import SYSTEM_PATH, Sandbox, SessionRoot
from pytest_installperm.scheme_facts import SchemeFacts, scheme_facts_of
from pytest_installperm.schemes import SCHEME_KEYS

if TYPE_CHECKING:
    from pytest_installperm.installers import Installer
    from pytest_installperm.releases import Code, Origin


def default_uid() -> tuple[int, int]:
    """The unprivileged identity a root session runs children as: ``nobody``."""
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _make_read_only_dirs(top: Path) -> None:
    """0555 on every directory below ``top`` (ours; files may be hard links)."""
    for directory, _dirs, _files in os.walk(top, topdown=False):
        os.chmod(directory, 0o555)


class Session:
    """State shared by every sandbox of one pytest session."""

    def __init__(
        self,
        *,
        backend: str = "auto",
        uid: int | None = None,
        gid: int | None = None,
        basetemp: str | None = None,
        installers: Sequence[Installer] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        mode: str = "auto",
    ) -> None:
        """``installers``: the presets whose programs, libraries and isolation
        children get (default: every registered preset). ``mode``: where
        ``system()`` puts the interpreter unless it says (see ``world.MODES``)."""
        self.backend_name = backend
        self.mode = mode
        self.basetemp = basetemp
        where = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        #: Templates shared across sessions; None: each session builds its own.
        self.cache = TemplateCache(where) if where is not None and use_cache else None
        default = default_uid()
        #: No uid asked for: as root, each sandbox gets a uid of its own (uids.py).
        self.pooled = uid is None
        self.uid = default[0] if uid is None else uid
        self.gid = (default[1] if uid is None else uid) if gid is None else gid
        self._root: SessionRoot | None = None
        self._bases: dict[str, BaseInterpreter] = {}
        self._templates: dict[tuple[str, bool], Template] = {}
        self._schemes: dict[tuple[str, bool, bool, str], SchemeFacts] = {}
        #: In place: which real directories a sandbox of each base is bound over.
        self.layouts = Layouts()
        self._pip: PipCopy | bool | None = False
        self._tools: Path | None = None
        self._installers = tuple(installers) if installers is not None else None
        self._libraries: dict[tuple[str, ...], Path] = {}
        #: Program names already looked for (found and copied, or not found).
        self._tried: set[str] = set()
        #: Python programs found but not asked for yet: built when a caller wants them.
        self._unwanted: set[str] = set()
        self._releases: dict[tuple[Origin, str | None], Code] = {}

    @property
    def root(self) -> SessionRoot:
        if self._root is None:
            self._root = SessionRoot(self.basetemp)
        return self._root

    def backend(self, spec: LockSpec, name: str | None = None) -> Backend:
        """The backend for ``spec``; LockUnavailable (a skip) if it cannot hold."""
        from pytest_installperm import uids
        from pytest_installperm.backends.contain import unavailable

        lease = uids.lease() if self.pooled and os.geteuid() == 0 else None
        uid, gid = (lease.uid, lease.gid) if lease is not None else (self.uid, self.gid)
        chosen = choose(name or self.backend_name, spec, uid=uid, gid=gid)
        chosen.lease = lease
        reason = chosen.cannot_hold(spec) or unavailable()
        if reason is not None:
            chosen.release()
            raise LockUnavailable(reason)
        return chosen

    def base(self, python: str | os.PathLike[str] | None) -> BaseInterpreter:
        key = str(python)
        if key not in self._bases:
            cache = self._cache_for(readable=False)
            if cache is None:
                self._bases[key] = inspect(python)
            else:
                path = executable_of(python)
                facts = cache.facts(
                    "layout",
                    {"python": str(path), **layout_key(path), "plugin": _plugin_identity()},
                    lambda: query_layout(path),
                )
                self._bases[key] = from_layout(path, facts)
        return self._bases[key]

    def _cache_for(self, *, readable: bool) -> TemplateCache | None:
        """The persistent cache, unless the uid that must read it could not reach it."""
        if self.cache is None:
            return None
        nearest = self.cache.root  # it is made 0755 below its nearest existing ancestor
        while not nearest.exists() and nearest != nearest.parent:
            nearest = nearest.parent
        if readable and not traversable_by_others(nearest):
            return None
        return self.cache

    def _cached(
        self, kind: str, key: dict[str, object], build: Callable[[Path], None], *, readable: bool
    ) -> Path:
        """A read-only tree from the persistent cache, or built in the session root.

        ``readable``: another uid must read it (root's children drop to one).
        """
        return self._cached_at(kind, key, lambda tree, _final: build(tree), readable=readable)

    def _cached_at(
        self,
        kind: str,
        key: dict[str, object],
        build: Callable[[Path, Path], None],
        *,
        readable: bool,
    ) -> Path:
        """:meth:`_cached` for a tree that names its own paths: ``build(tree,
        final)`` writes into ``tree`` what will be used at ``final``."""
        cache = self._cache_for(readable=readable)
        if cache is not None:
            full = {**key, "plugin": _plugin_identity()}
            final = cache.entry(kind, full) / TREE
            return cache.get(kind, full, lambda tree: build(tree, final))
        tree = self.root.new_dir(f"{kind}-") / "tree"
        build(tree, tree)
        if os.geteuid() != 0:
            _make_read_only_dirs(tree)
        return tree

    def template(self, base: BaseInterpreter, *, readable: bool) -> Template:
        key = (str(base.executable), readable)
        if key not in self._templates:
            self._templates[key] = self._template(base, readable)
        return self._templates[key]

    def _template(self, base: BaseInterpreter, readable: bool) -> Template:
        def build(tree: Path) -> None:
            Template.build(base, tree, readable=readable)

        key = template_key(base, readable=readable)
        tree = self._cached("python", key, build, readable=readable)
        template = Template.open(base, tree)
        # Sandboxes hard-link the binary: one copy on the session root's filesystem.
        bindir = self.root.new_dir("bin-")
        binary = bindir / base.binary_name
        try:
            os.link(template.binary, binary)
        except OSError:
            shutil.copy2(template.binary, binary)
        os.chmod(bindir, 0o555)
        return dataclasses.replace(template, binary=binary)

    def pip(self) -> PipCopy | None:
        """A readable, read-only copy of the running environment's pip, or None."""
        if self._pip is False:
            self._pip = copy_pip(functools.partial(self._cached, readable=os.geteuid() == 0))
        return self._pip if isinstance(self._pip, PipCopy) else None

    def installers(self) -> tuple[Installer, ...]:
        if self._installers is None:
            from pytest_installperm.installers import default_registry

            self._installers = tuple(default_registry().presets())
        return self._installers

    def isolation(self, sandbox: Sandbox) -> dict[str, str]:
        """Every preset's isolation variables for a child in ``sandbox``."""
        from pytest_installperm.installers.registry import isolation

        return isolation(self.installers(), sandbox)

    def libraries(self, names: Sequence[str]) -> Path:
        """A readable directory for ``PYTHONPATH`` holding copies of the packages
        ``names`` and of everything they require (their distributions' metadata
        says what), with their bytecode: a child cannot write caches into this
        copy. A package is taken from here if importable, else from the
        interpreter of the program of the same name on PATH (poetry installed
        with pipx)."""
        from pytest_installperm import programs

        key = tuple(sorted(names))
        if key not in self._libraries:
            pythons = [self._python_of(name) for name in key]

            def build(lib: Path) -> None:
                lib.mkdir(parents=True)
                for name, python in zip(key, pythons, strict=True):
                    facts = programs.closure(python, name, what=f"library {name!r}")
                    programs.copy_files(facts, lib)

            what = {
                "libraries": list(key),
                "pythons": [programs.python_identity(python) for python in pythons],
                "builder": identity(Path(programs.__file__)),
            }
            self._libraries[key] = self._cached("library", what, build, readable=os.geteuid() == 0)
        return self._libraries[key]

    def release(
        self,
        origin: Origin,
        *,
        constraints: Sequence[str] | None = None,
        python: str | os.PathLike[str] | None = None,
    ) -> Code:
        """A readable copy of a versioned installer's code (``NAME==X``,
        ``NAME@PATH``), made once per session from the verified release.

        ``constraints`` not None: a Python tool, with its dependencies, in a venv
        of its own for the base interpreter ``python`` (:mod:`.toolvenvs`),
        kept in the persistent cache."""
        key = (origin, None if constraints is None else str(python))
        if key not in self._releases:
            if constraints is None:
                from pytest_installperm.releases import provide

                self._releases[key] = provide(origin, self.root.new_dir("release-"))
            else:
                self._releases[key] = self._tool_release(origin, constraints, python)
        return self._releases[key]

    def _tool_release(
        self, origin: Origin, constraints: Sequence[str], python: str | os.PathLike[str] | None
    ) -> Code:
        from pytest_installperm import toolvenvs

        source = toolvenvs.source_of(origin)
        base = self.base(python)
        template = self.template(base, readable=True)
        if source.kind == "installed":
            return toolvenvs.copy_installed(
                origin,
                source.path,
                self.root.new_dir("release-") / "tool",
                lambda found: self.template(self.base(found), readable=True),
            )
        key = {
            **toolvenvs.build_key(origin, source, constraints),
            **template_key(base, readable=True),
        }
        build = functools.partial(
            toolvenvs.build, name=origin.name, wheel=source.path, template=template
        )
        return toolvenvs.open_tool(
            origin,
            self._cached_at(
                "tool", key, functools.partial(build, constraints=constraints), readable=True
            ),
        )

    def _python_of(self, name: str) -> Path:
        from pytest_installperm import programs

        if importlib.util.find_spec(name) is not None:
            return Path(sys.executable)
        found = shutil.which(name, path=_search_path())
        python = programs.shebang_python(Path(found)) if found else None
        if python is None:
            raise ModuleNotFoundError(
                f"library {name!r} is not importable here, and no Python program {name!r} "
                "is on PATH to take it from"
            )
        return python

    def tools(self, wanted: Sequence[str] = ()) -> Path:
        """A readable directory, on every child's PATH, holding the installer
        programs found here: every preset's self-contained programs (uv), and
        the Python tools in ``wanted`` (poetry, pdm, ...), each made runnable by
        a dropped uid from wherever it is installed (see :mod:`.programs`).
        Python tools are built only when asked for: each costs a copy of its
        distributions."""
        from pytest_installperm import programs

        if self._tools is None:
            self._tools = self.root.new_dir("tools-")
        names = {p for i in self.installers() for p in i.programs} | set(wanted)
        # Every sandbox asks: after the first, nothing is left to look for.
        todo = sorted(names - self._tried - (self._unwanted - set(wanted)))
        search = _search_path() if todo else ""
        for name in todo:
            found = shutil.which(name, path=search)
            if found is None:
                self._tried.add(name)
                continue
            if programs.shebang_python(Path(found)) is not None and name not in wanted:
                self._unwanted.add(name)
                continue
            self._tried.add(name)
            programs.make_runnable(
                Path(found),
                self._tools,
                cached=functools.partial(self._cached_at, readable=True),
                template_of=lambda base: self.template(self.base(base), readable=True),
            )
        return self._tools

    def schemes(
        self, template: Template, backend: Backend, *, venv: bool, system_site_packages: bool
    ) -> SchemeFacts:
        """Ask a relocated copy for its schemes, once per base, kind and backend."""
        key = (str(template.root), venv, system_site_packages, backend.name)
        if key not in self._schemes:
            # A uid from the pool is whichever was free: the answer is the
            # same for each of them, so the key names the pool, not the uid.
            owner = ["pool"] if backend.lease is not None else list(backend.owner())
            readable = backend.needs_readable_copies
            what = {
                **template_key(template.base, readable=readable),
                "kind": [venv, system_site_packages],
                "backend": [backend.name, *owner],
            }
            self._schemes[key] = self._kept_schemes(
                what,
                lambda: self._probe(
                    template, backend, venv=venv, system_site_packages=system_site_packages
                ),
                readable=readable,
            )
        return self._schemes[key]

    def _kept_schemes(
        self, what: dict[str, object], probe: Callable[[], SchemeFacts], *, readable: bool
    ) -> SchemeFacts:
        """``probe()``, asked once per ``what`` and kept in the persistent cache
        (so once per base, not per session and xdist worker) when there is one."""
        cache = self._cache_for(readable=readable)
        if cache is None:
            return probe()
        full = {**what, "plugin": _plugin_identity()}
        return SchemeFacts(**cache.facts("schemes", full, lambda: dataclasses.asdict(probe())))

    def _probe(
        self, template: Template, backend: Backend, *, venv: bool, system_site_packages: bool
    ) -> SchemeFacts:
        sandbox = Sandbox(self.root.new_dir("probe-"))
        python = template.relocate(sandbox.prefix, externally_managed=None)
        if venv:
            python = create_venv(
                sandbox.venv,
                python,
                template.base.version,
                system_site_packages=system_site_packages,
            )
        env = sandbox.child_env(
            path_dirs=[Path(d) for d in SYSTEM_PATH], defaults=library_path(template)
        )
        try:
            data = query_schemes(python, env, {**backend.popen_kwargs(), "cwd": "/"})
        except InterpreterError as exc:
            if backend.needs_readable_copies:
                uid, _ = backend.owner()
                raise LockUnavailable(
                    f"the relocated interpreter does not run as uid {uid} ({exc}); "
                    "backend 'privdrop' cannot be used with this base interpreter"
                ) from exc
            raise
        finally:
            sandbox.remove()
        return scheme_facts_of(data, sandbox)

    def real_schemes(self, base: BaseInterpreter) -> SchemeFacts:
        """Ask ``base`` itself, where it lives, for its schemes (in-place mode), once."""
        key = (str(base.executable), False, False, "in-place")
        if key not in self._schemes:

            def probe() -> SchemeFacts:
                sandbox = Sandbox(self.root.new_dir("probe-"))
                env = sandbox.child_env(path_dirs=[Path(d) for d in SYSTEM_PATH])
                try:
                    data = query_schemes(base.executable, env, {"cwd": "/"})
                finally:
                    sandbox.remove()
                return scheme_facts_of(data, sandbox)

            from pytest_installperm.programs import python_identity

            # Unlike a relocated copy, the real interpreter sees its own site
            # directories (a .pth or sitecustomize there may move a scheme).
            what = {
                **template_key(base, readable=False),
                "kind": "in-place",
                "sites": python_identity(base.executable),
            }
            self._schemes[key] = self._kept_schemes(what, probe, readable=False)
        return self._schemes[key]

    def close(self) -> None:
        if self._root is not None:
            self._root.remove()
            self._root = None


def _search_path() -> str:
    """Where installer programs are looked for: next to this interpreter, then PATH."""
    return os.pathsep.join(
        [
            sysconfig.get_path("scripts"),
            os.path.dirname(sys.executable),
            os.environ.get("PATH", os.defpath),
        ]
    )


def library_path(template: Template) -> dict[str, str]:
    """LD_LIBRARY_PATH for a shared-libpython build, whose RUNPATH may be unreadable."""
    return {"LD_LIBRARY_PATH": str(template.libdir)} if template.libdir else {}


@functools.cache
def _plugin_identity() -> list[object]:
    """Part of every cache key: the modules that decide what an entry holds."""
    here = Path(__file__).parent
    names = ("cache.py", "interpreter.py", "pip_copy.py", "session.py")
    return [identity(here / name) for name in names]


__all__ = ["SCHEME_KEYS", "SchemeFacts", "Session", "default_uid"]
