"""The pyfakefs traps of the in-process mode, each handled or refused by name.

* **root**: as root pyfakefs fakes a root user, who may write anywhere. The
  Patcher runs with ``allow_root_user=False`` and the fake uid is set to
  :data:`FAKE_UID`; ``os.geteuid`` and ``os.getegid`` are faked too, since
  pyfakefs fakes only ``getuid``/``getgid`` and pip asks the effective ids.
* **os.access**: pyfakefs's ``access`` reads only the owner bits, whoever owns
  the file, so a root-owned 0755 site-packages looked writable to the fake
  user while creating a file in it failed. :func:`access` applies the owner,
  group and other classes as the kernel does; the parity test proves the
  decision against real pip.
* **byte-compiling**: ``py_compile`` reads and writes through importlib's
  private ``_io``/``_os`` bindings, which pyfakefs does not patch, so
  ``compileall`` failed quietly (and as root could even write ``.pyc`` files
  into a real directory of the same name). :func:`compile_in` runs the real
  ``py_compile`` with those three entry points pointed at the fake filesystem.
* **lazy_read**: a directory mapped with ``add_real_directory`` keeps the real
  owner and is read lazily; the fake world maps with ``lazy_read=False`` and
  gives it to the fake user, so it is listable.
* **the Patcher singleton**: pyfakefs has one Patcher per process, and a second
  one silently shares the first, dropping its settings. A test that also asks
  for ``fs`` (or runs inside another Patcher) gets :class:`FakefsError` naming
  both, before anything is patched (:func:`check_conflicts`).
* **Windows emulation** leaves ``os.name == "posix"``: the ``windows`` layout
  therefore fakes the Windows *paths* only (see docs/fakefs.md).
* **cached user base**: handled in :mod:`pytest_installperm.fakefs_layouts`.
* **modules first imported under pyfakefs** are bound to that test's fake
  filesystem and dropped from ``sys.modules`` afterwards, while their parent
  package keeps the stale module; the fake world therefore imports everything
  it needs while faking before pyfakefs starts.

docs/design.md lists these among the verified facts.
"""

from __future__ import annotations

import importlib._bootstrap_external as bootstrap_external
import os
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from typing import Any

from pyfakefs import helpers as fake_helpers
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.fake_filesystem_unittest import Patcher
from pyfakefs.fake_open import FakeFileOpen
from pyfakefs.fake_os import FakeOsModule

from pytest_installperm.errors import FakefsError

#: The identity code under test sees: a normal user, like uid 1000 in a Docker
#: image whose system site belongs to root.
FAKE_UID = 1000
FAKE_GID = 1000
#: Where fake sandboxes live. The name must not exist on the real machine, so a
#: write that escapes pyfakefs (through a module it does not patch) fails.
FAKE_ROOT = PurePosixPath("/installperm-fakefs")
BACKEND = "fakefs"
#: pyfakefs fixtures that would share (and silently reconfigure) our Patcher.
PYFAKEFS_FIXTURES = ("fs", "fs_class", "fs_module", "fs_session")
#: Host variables that would leak into the code under test.
HOST_VARIABLES = (
    "PIP_",
    "UV_",
    "XDG_",
    "PYTHONUSERBASE",
    "PYTHONNOUSERSITE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
)


def check_conflicts(fixturenames: Iterable[str], *, owner: str = "installperm_fakefs") -> None:
    """Refuse to share pyfakefs's process-wide Patcher with anyone else.

    A second Patcher is the first one again, with the second caller's
    arguments discarded, so ``fs`` plus ``installperm_fakefs`` would run one
    of them with the other's settings (e.g. as root). Fail before that.
    """
    clash = sorted(set(fixturenames) & set(PYFAKEFS_FIXTURES))
    if clash:
        raise FakefsError(
            f"{owner} cannot be combined with pyfakefs's {', '.join(map(repr, clash))} "
            "fixture in one test: pyfakefs has a single Patcher per process, so one of them "
            f"would silently run with the other's settings. Use {owner}.fs for the fake "
            "filesystem instead"
        )
    if Patcher.PATCHER is not None:
        raise FakefsError(
            f"{owner}: a pyfakefs Patcher is already active in this process (from the fs "
            "fixture, a Patcher() context or a TestCase with setUpPyfakefs); pyfakefs has "
            "a single Patcher per process and would drop our settings "
            "(allow_root_user=False, the fake uid). Use one or the other"
        )


def access(
    self: FakeOsModule,
    path: Any,
    mode: int,
    *,
    dir_fd: int | None = None,
    effective_ids: bool = False,
    follow_symlinks: bool = True,
) -> bool:
    """``os.access`` as the kernel decides it: by owner, group or other bits.

    Root (uid 0) may read and write anything and execute what has any x bit.
    """
    path = self._path_with_dir_fd(path, access, dir_fd)
    try:
        st = self.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return False
    if fake_helpers.is_root():
        return not mode & os.X_OK or bool(st.st_mode & 0o111)
    if st.st_uid == fake_helpers.get_uid():
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid == fake_helpers.get_gid():
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return (mode & bits) == mode


class FakeIO:
    """The fake filesystem's own ``os`` and ``open``, bound explicitly."""

    def __init__(self, fs: FakeFilesystem) -> None:
        self.os = FakeOsModule(fs)
        self.open = FakeFileOpen(fs)

    def read_bytes(self, path: str) -> bytes:
        with self.open(path, "rb") as stream:
            data: bytes = stream.read()
        return data

    def write_atomic(self, path: str, data: bytes, mode: int = 0o666) -> None:
        """Like importlib's ``_write_atomic``: a temporary file, then a rename."""
        temp = f"{path}.{id(data)}"
        with self.open(temp, "wb") as stream:
            stream.write(data)
        self.os.chmod(temp, mode & 0o666)
        self.os.replace(temp, path)


_IMPORTLIB_HOOKS = ("_path_stat", "_write_atomic", "FileLoader")


def compile_in(real: Callable[..., Any], fio: FakeIO) -> Callable[..., Any]:
    """``py_compile.compile`` that reads and writes the fake filesystem.

    The real function is used unchanged; only importlib's private file access
    is redirected while it runs (nothing is imported meanwhile). Without the
    hooks (another Python), byte-compiling is refused rather than faked.
    """

    def compile_in_fake_fs(file: Any, *args: Any, **kwargs: Any) -> Any:
        if not all(hasattr(bootstrap_external, name) for name in _IMPORTLIB_HOOKS):
            raise FakefsError(
                f"byte-compiling {file} under installperm_fakefs: this Python's importlib "
                "has no _path_stat/_write_atomic to redirect; install with "
                "bytecode_optimization_levels=() (installer) or --no-compile (pip)"
            )
        loader = bootstrap_external.FileLoader

        def get_data(_loader: object, path: str) -> bytes:
            return fio.read_bytes(path)

        hooks: list[tuple[object, str, object]] = [
            (bootstrap_external, "_path_stat", fio.os.stat),
            (bootstrap_external, "_write_atomic", fio.write_atomic),
            (loader, "get_data", get_data),
        ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in hooks]
        for owner, name, value in hooks:
            setattr(owner, name, value)
        try:
            return real(file, *args, **kwargs)
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)

    return compile_in_fake_fs


__all__ = [
    "BACKEND",
    "FAKE_GID",
    "FAKE_ROOT",
    "FAKE_UID",
    "HOST_VARIABLES",
    "PYFAKEFS_FIXTURES",
    "FakeIO",
    "access",
    "check_conflicts",
    "compile_in",
]
