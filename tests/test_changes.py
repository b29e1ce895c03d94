"""Change tracking: directory-level diffs that still see every created,
modified and deleted path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_installperm.changes import Snapshot
from pytest_installperm.errors import RoleError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "site" / "pkg").mkdir(parents=True)
    (tmp_path / "site" / "pkg" / "a.py").write_text("a")
    (tmp_path / "site" / "keep.txt").write_text("k")
    (tmp_path / "home").mkdir()
    return tmp_path


def test_no_change_is_empty(tree: Path) -> None:
    snap = Snapshot.take(tree)
    changes = snap.update()
    assert not changes
    assert str(changes) == "(no changes)"


def test_created_tree_lists_every_path(tree: Path) -> None:
    snap = Snapshot.take(tree)
    (tree / "home" / ".local" / "lib").mkdir(parents=True)
    (tree / "home" / ".local" / "lib" / "m.py").write_text("m")
    changes = snap.update()
    assert changes.created == {
        tree / "home" / ".local",
        tree / "home" / ".local" / "lib",
        tree / "home" / ".local" / "lib" / "m.py",
    }
    assert not changes.modified and not changes.deleted


def test_deleted_tree_lists_every_path(tree: Path) -> None:
    snap = Snapshot.take(tree)
    (tree / "site" / "pkg" / "a.py").unlink()
    (tree / "site" / "pkg").rmdir()
    changes = snap.update()
    assert changes.deleted == {tree / "site" / "pkg", tree / "site" / "pkg" / "a.py"}
    assert not changes.created


def test_replaced_file_is_deleted_and_created(tree: Path) -> None:
    snap = Snapshot.take(tree)
    target = tree / "site" / "keep.txt"
    (tree / "site" / "new.tmp").write_text("different")
    os.replace(tree / "site" / "new.tmp", target)
    changes = snap.update()
    assert target in changes.created and target in changes.deleted


def test_in_place_rewrite_in_dirty_dir_is_modified(tree: Path) -> None:
    snap = Snapshot.take(tree)
    (tree / "site" / "keep.txt").write_text("rewritten in place")
    (tree / "site" / "other.txt").write_text("makes the directory dirty")
    changes = snap.update()
    assert changes.modified == {tree / "site" / "keep.txt"}


def test_deep_diff_sees_in_place_rewrite_in_clean_dir(tree: Path) -> None:
    snap = Snapshot.take(tree, watch=False)
    (tree / "site" / "pkg" / "a.py").write_text("rewritten, same directory entries")
    assert not snap.update()  # the sweep cannot see it, by design
    assert snap.deep_diff(tree / "site") == {tree / "site" / "pkg" / "a.py"}


def test_watched_snapshot_sees_in_place_rewrite_in_clean_dir(tree: Path) -> None:
    snap = Snapshot.take(tree)
    assert snap.watch is not None and not snap.watch.broken, "inotify unavailable here"
    (tree / "site" / "pkg" / "a.py").write_text("rewritten, same directory entries")
    assert snap.update().modified == {tree / "site" / "pkg" / "a.py"}


def test_unsure_watch_falls_back_to_comparing_every_directory(tree: Path) -> None:
    snap = Snapshot.take(tree)
    assert snap.watch is not None
    snap.watch.broken = True  # what a queue overflow or a watch limit does
    (tree / "site" / "pkg" / "b.py").write_text("b")
    assert snap.update().created == {tree / "site" / "pkg" / "b.py"}


def test_directory_moved_away_and_made_again_is_compared(tree: Path) -> None:
    snap = Snapshot.take(tree)
    os.rename(tree / "site" / "pkg", tree / "home" / "moved")
    (tree / "site" / "pkg").mkdir()
    (tree / "site" / "pkg" / "new.py").write_text("n")
    changes = snap.update()
    assert tree / "site" / "pkg" / "new.py" in changes.created
    assert tree / "site" / "pkg" / "a.py" in changes.deleted
    assert tree / "home" / "moved" / "a.py" in changes.created
    (tree / "site" / "pkg" / "later.py").write_text("l")  # the new directory is watched
    assert snap.update().created == {tree / "site" / "pkg" / "later.py"}


def test_chmod_of_directory_is_modified(tree: Path) -> None:
    snap = Snapshot.take(tree)
    os.chmod(tree / "site", 0o700)
    changes = snap.update()
    assert changes.modified == {tree / "site"}


def test_snapshot_advances_between_runs(tree: Path) -> None:
    snap = Snapshot.take(tree)
    (tree / "home" / "one").write_text("1")
    assert snap.update().created == {tree / "home" / "one"}
    (tree / "home" / "two").write_text("2")
    assert snap.update().created == {tree / "home" / "two"}


def test_under_role_and_unknown_role(tree: Path) -> None:
    snap = Snapshot.take(tree)
    (tree / "home" / "x").write_text("x")
    (tree / "site" / "y").write_text("y")
    changes = snap.update().with_roles({"home": tree / "home", "system": tree / "site"})
    assert changes.under("home").created == {tree / "home" / "x"}
    assert changes.under("system").created == {tree / "site" / "y"}
    with pytest.raises(RoleError, match=r"unknown role 'usr'.*home, system"):
        changes.under("usr")


def test_lines_are_sorted(tree: Path) -> None:
    snap = Snapshot.take(tree)
    for name in ("c", "a", "b"):
        (tree / "home" / name).write_text(name)
    lines = snap.update().lines()
    assert lines == sorted(lines) and len(lines) == 3


def test_hard_link_elsewhere_is_not_a_change(tree: Path, tmp_path_factory) -> None:
    """Linking a shared file into another tree moves its ctime, nothing else."""
    shared = tree / "site" / "keep.txt"
    other = tmp_path_factory.mktemp("other")
    os.link(shared, other / "template")  # like the interpreter: template + sandbox
    snap = Snapshot.take(tree)
    os.link(shared, other / "next-sandbox")
    assert not snap.update()
    assert not snap.deep_diff(tree)


def test_changes_compare_to_sets(tree: Path) -> None:
    snap = Snapshot.take(tree)
    assert snap.update() == set()
    (tree / "home" / "x").write_text("x")
    changes = snap.update()
    assert changes == {tree / "home" / "x"}
    assert changes != set()
