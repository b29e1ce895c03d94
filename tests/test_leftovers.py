"""Whatever a child leaves behind, the verdicts give a verdict, the sandbox is
removed, and nothing outside changes; the harness never follows it.

Also: the parent's own writes before the lock (``preinstalled=``) stay in the
sandbox's real directories, never through the stdlib symlinks.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm, PlacementError
from pytest_installperm.errors import UnsafePathError

STDLIB = Path(sysconfig.get_paths()["stdlib"])
VERSION = f"python{sysconfig.get_python_version()}"
#: How a sandbox reaches its stdlib: lib/pythonXY.zip, a symlink to the template's stdlib.
ZIPDIR = f"python{sysconfig.get_python_version().replace('.', '')}.zip"
SECRET = "s3cr3t-in-a-root-only-file"


def _tree_digest(top: Path) -> str:
    """Names, sizes and mtimes of every entry under ``top`` (no following)."""
    digest = hashlib.sha256()
    for directory, dirs, files in sorted(os.walk(top)):
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(directory, name))
            digest.update(f"{directory}/{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


LEFTOVERS = {
    "symlink-to-secret": "os.symlink(SECRET_PATH, TARGET)",
    "symlink-to-environ": "os.symlink('/proc/self/environ', TARGET)",
    "symlink-loop": "os.symlink(TARGET, TARGET)",
    "dangling-symlink": "os.symlink('/nonexistent/x', TARGET)",
    "fifo": "os.mkfifo(TARGET)",
    # bound by its relative name: a sandbox path can be longer than AF_UNIX's 108 bytes
    "socket": "import socket; os.chdir(os.path.dirname(TARGET)); "
    "socket.socket(socket.AF_UNIX).bind(os.path.basename(TARGET))",
    "directory-0000": "os.mkdir(TARGET); os.chmod(TARGET, 0)",
    "package-dir-symlink": "import shutil; shutil.rmtree(os.path.dirname(TARGET)); "
    "os.symlink(os.path.dirname(SECRET_PATH), os.path.dirname(TARGET))",
}


@pytest.mark.parametrize("where", ["module", "script"])
@pytest.mark.parametrize("what", sorted(LEFTOVERS))
def test_leftover_where_a_file_was_expected(
    installperm: InstallPerm,
    make_wheel: Callable[..., Path],
    secret: Path,
    what: str,
    where: str,
) -> None:
    """A script's first line is quoted in a verdict: one read through a link
    would print a root-only file, or this process's own environment."""
    if where == "script" and what == "package-dir-symlink":
        pytest.skip("the scripts directory is the environment's own, not the package's")
    wheel = make_wheel(
        "victim",
        purelib={"victim/__init__.py": "def main():\n    pass\n"},
        console_scripts={"victim-cli": "victim:main"},
    )
    env = installperm.system(externally_managed=False, locked=())
    installed = env.pip("install", "--no-index", "--no-deps", wheel)
    assert installed.returncode == 0, installed.describe()
    if where == "module":
        target = env.paths("system")["purelib"] / "victim" / "__init__.py"
    else:
        target = env.paths("system")["scripts"] / "victim-cli"
    stdlib_before = _tree_digest(STDLIB / "json")
    code = (
        f"import os\nSECRET_PATH, TARGET = {str(secret)!r}, {str(target)!r}\n"
        f"os.unlink(TARGET)\n{LEFTOVERS[what]}\n"
    )
    script = env.sandbox.work / "leave.py"
    script.write_text(code)
    env.snapshot().update()
    result = env.run([env.python, script])
    assert result.returncode == 0, result.describe()
    with pytest.raises(PlacementError) as caught:
        result.assert_installed(wheel, scheme="system")
    message = str(caught.value)
    assert "s3cr3t" not in message
    assert "HOME=" not in message and "PATH=" not in message  # /proc/self/environ
    assert str(target) in message or "victim" in message
    for check in (result.assert_no_residue, lambda: result.assert_untouched("system")):
        verdict = ""
        try:
            check()
        except PlacementError as exc:  # a verdict, never another exception
            verdict = str(exc)
        assert "s3cr3t" not in verdict
    root = env.root
    installperm.close()
    assert not root.exists()
    assert secret.read_text() == SECRET and (secret.stat().st_mode & 0o777) == 0o600
    assert _tree_digest(STDLIB / "json") == stdlib_before


def test_messy_tree_is_removed(installperm: InstallPerm, tmp_path: Path) -> None:
    """Deep nesting, 0000 and 0555 directories, fifos, sockets, links out,
    read-only files: teardown removes it all and touches nothing outside."""
    env = installperm.system(externally_managed=False, locked=())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    script = env.sandbox.work / "mess.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, socket
        base = {str(env.sandbox.tmp)!r}
        deep = base
        for i in range(300):
            deep = os.path.join(deep, "d")
        os.makedirs(deep)
        os.mkfifo(os.path.join(base, "fifo"))
        socket.socket(socket.AF_UNIX).bind(os.path.join(base, "sock"))
        os.symlink({str(outside)!r}, os.path.join(base, "out"))
        os.symlink("/", os.path.join(base, "root"))
        for name, mode in (("locked", 0), ("readonly", 0o555)):
            os.makedirs(os.path.join(base, name, "inner"))
            open(os.path.join(base, name, "inner", "f"), "w").close()
            os.chmod(os.path.join(base, name, "inner", "f"), 0)
            os.chmod(os.path.join(base, name, "inner"), mode)
            os.chmod(os.path.join(base, name), mode)
        """)
    )
    env.snapshot().update()
    result = env.run([env.python, script])
    assert result.returncode == 0, result.describe()
    assert not result.outside
    root = env.root
    installperm.close()
    assert not root.exists()
    assert (outside / "keep").read_text() == "keep"


#: What a crafted wheel aims at, from which scheme directory: a path under the
#: sandbox's prefix, which holds the links to the stdlib.
AIMS = {
    "into-a-linked-dir": ("data", f"lib/{ZIPDIR}/json/evil_canary.py"),
    "onto-a-linked-file": ("data", f"lib/{VERSION}/os.py"),
    "dotdot-into-a-link": ("purelib", f"lib/{ZIPDIR}/json/evil_canary.py"),
}


@pytest.mark.parametrize("aim", sorted(AIMS))
@pytest.mark.parametrize("backend", ["privdrop", "chmod"])
def test_preinstall_never_writes_through_stdlib_links(
    installperm: InstallPerm, tmp_path: Path, aim: str, backend: str
) -> None:
    """Root installs ``preinstalled=`` before the lock; data aimed at the stdlib
    would land in the session template (privdrop) or the real stdlib (chmod).

    The member is written relative to the scheme directory of this interpreter's
    layout (``prefix`` on pyenv, ``prefix/local`` under Debian's posix_local)."""
    if os.geteuid() != 0:
        pytest.skip("the parent writes as root only when it is root")
    from test_safety import craft_wheel

    key, aimed = AIMS[aim]
    relocated = {"externally_managed": False, "locked": (), "backend": backend, "mode": "relocated"}
    probe = installperm.system(**relocated)
    prefix = probe.python.parent.parent
    member = f"evil-1.0.data/{key}/{os.path.relpath(prefix / aimed, probe.paths('system')[key])}"
    wheel = craft_wheel(tmp_path, "evil", {"evil/__init__.py": b"", member: b"pwned = 1\n"})
    before = _tree_digest(STDLIB / "json")
    os_py = (STDLIB / "os.py").read_bytes()
    with pytest.raises(UnsafePathError) as caught:
        installperm.system(**relocated, preinstalled=[wheel])
    message = str(caught.value)
    assert "symlink" in message and "would leave" in message, message
    assert _tree_digest(STDLIB / "json") == before
    assert (STDLIB / "os.py").read_bytes() == os_py
    # and the session template of later sandboxes is clean too
    env = installperm.system(**relocated)
    listed = env.run(
        [env.python, "-c", "import json, os; print(sorted(os.listdir(json.__path__[0])))"]
    )
    assert "evil_canary.py" not in listed.stdout, listed.stdout
