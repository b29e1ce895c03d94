"""Removing a sandbox: everything below it goes, whatever its modes, and
nothing a child's symlink points to is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_installperm.sandbox import remove_tree


def outside_tree(top: Path) -> Path:
    outside = top / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("kept")
    (outside / "file").write_text("kept")
    return outside


def listing(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def test_a_tree_with_links_out_and_closed_directories_goes_and_the_outside_stays(
    tmp_path: Path,
) -> None:
    outside = outside_tree(tmp_path)
    before = listing(outside)
    sandbox = tmp_path / "sandbox"
    deep = sandbox / "prefix" / "lib" / "site-packages" / "pkg"
    deep.mkdir(parents=True)
    (deep / "mod.py").write_text("")
    os.symlink(outside, sandbox / "prefix" / "lib" / "to-dir")  # what a child may leave
    os.symlink(outside / "file", deep / "to-file")
    os.symlink(outside / "keep", sandbox / "to-dir-by-name")
    os.symlink("missing", sandbox / "dangling")
    closed = sandbox / "home" / "closed"
    (closed / "inner").mkdir(parents=True)
    (closed / "inner" / "file").write_text("")
    os.chmod(closed / "inner", 0)
    os.chmod(closed, 0o555)
    chain = sandbox / "work"
    for _ in range(200):  # deeper than a few: one descriptor per level, no recursion
        chain /= "d"
    chain.mkdir(parents=True)
    remove_tree(sandbox)
    assert not os.path.lexists(sandbox)
    assert listing(outside) == before
    assert (outside / "keep" / "file").read_text() == "kept"


def test_a_symlink_is_refused_and_what_it_names_stays(tmp_path: Path) -> None:
    outside = outside_tree(tmp_path)
    link = tmp_path / "link"
    os.symlink(outside, link)
    with pytest.raises(NotADirectoryError):  # O_NOFOLLOW | O_DIRECTORY on a link
        remove_tree(link)
    assert (outside / "file").read_text() == "kept"
    assert link.is_symlink()


def test_a_missing_tree_is_nothing_to_do(tmp_path: Path) -> None:
    remove_tree(tmp_path / "never-made")
    assert listing(tmp_path) == []
