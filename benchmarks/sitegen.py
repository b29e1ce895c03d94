"""Inputs for the benchmark: a tiny wheel, and a system site full of files.

Why hand-built: the benchmark must not depend on modules other engineers are
still writing (``wheels.make_wheel``), and it needs thousands of preinstalled
files in seconds, which a real installer cannot write that fast.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path


def small_wheel(directory: Path, name: str, version: str = "1.0") -> Path:
    """A valid pure-Python wheel with one module; RECORD has sha256 hashes."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 1\n",
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: installperm-benchmark\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


#: Layout of one synthetic distribution: 20 modules, a subpackage of 25, and
#: 5 metadata files; 50 files in 3 directories, like a small real package.
FILES_PER_DIST = 50


def populate_site(site: Path, n_files: int) -> tuple[int, int]:
    """Fill ``site`` with ``n_files`` files in ``n_files / 50`` distributions.

    Files are hard links to one source file: creating an inode costs about
    0.5 ms on this machine's disk, a link about 10 us, and change detection
    lstat()s a link exactly as it does a file. Returns (files, directories).
    """
    source = site / "_installperm_bench_source.py"
    source.write_bytes(b"# benchmark filler\n")
    files, dirs = 1, 0
    for index in range(max(1, n_files // FILES_PER_DIST)):
        package = site / f"benchfill{index:05d}"
        sub = package / "sub"
        meta = site / f"benchfill{index:05d}-1.0.dist-info"
        for directory in (package, sub, meta):
            directory.mkdir()
            dirs += 1
        targets = [package / f"mod{i:02d}.py" for i in range(20)]
        targets += [sub / f"mod{i:02d}.py" for i in range(25)]
        targets += [meta / n for n in ("METADATA", "RECORD", "WHEEL", "INSTALLER", "top_level.txt")]
        for target in targets:
            os.link(source, target)
        files += len(targets)
    return files, dirs
