"""The persistent template cache: reused when sound, rebuilt when not, cleared on request.

The cache directory of each test lives in the session root, which a dropped
uid can traverse (pytest's own tmp_path is 0700 as root, and the engine does
not use a cache that the child's uid could not reach).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm, cache, uids
from pytest_installperm.cache import MANIFEST, TEMPLATES, TREE, TemplateCache
from pytest_installperm.errors import CacheError
from pytest_installperm.fixtures import get_session
from pytest_installperm.session import Session


@pytest.fixture
def cache_dir(request: pytest.FixtureRequest) -> Path:
    return get_session(request.config).root.new_dir("cache-") / "plugin-cache"


def entries(root: Path) -> dict[str, int]:
    """Entry names and their inode numbers: a rebuilt entry has a new inode."""
    templates = root / TEMPLATES
    return {p.name: p.stat().st_ino for p in templates.iterdir() if not p.name.startswith(".")}


def session_python(cache_dir: Path) -> tuple[Path, str]:
    """Build one environment in a fresh session; its template's stdlib and an import."""
    session = Session(cache_dir=cache_dir)
    factory = InstallPerm(session)
    try:
        env = factory.system(externally_managed=False, mode="relocated")
        result = env.run([env.python, "-c", "import json, sys; print(sys.prefix)"])
        assert result.returncode == 0, result.stderr
        stdlib = env.prefix / "lib" / f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
        return Path(os.readlink(stdlib)) / "json", result.stdout.strip()
    finally:
        factory.close()
        session.close()


def test_a_warm_session_reuses_the_cache(cache_dir: Path) -> None:
    first, prefix = session_python(cache_dir)
    assert cache_dir in first.parents, "the sandbox's stdlib does not come from the cache"
    built = entries(cache_dir)
    assert {name.split("-")[0] for name in built} >= {"python", "pip", "layout", "schemes"}
    second, _ = session_python(cache_dir)
    assert second == first
    assert entries(cache_dir) == built, "a warm session rebuilt or added entries"
    assert prefix.endswith("/prefix")


def test_a_corrupt_template_is_rebuilt(cache_dir: Path) -> None:
    stdlib, _ = session_python(cache_dir)
    built = entries(cache_dir)
    python = next(name for name in built if name.startswith("python-"))
    victim = stdlib / "decoder.py"  # json/decoder.py, needed by `import json`
    os.chmod(victim.parent, 0o755)
    victim.unlink()
    again, _ = session_python(cache_dir)
    assert again == stdlib and victim.is_file()
    rebuilt = entries(cache_dir)
    assert rebuilt[python] != built[python]
    assert {k: v for k, v in rebuilt.items() if k != python} == {
        k: v for k, v in built.items() if k != python
    }


def test_a_stale_key_or_a_broken_manifest_is_rebuilt(cache_dir: Path) -> None:
    cache = TemplateCache(cache_dir)
    calls: list[Path] = []

    def build(tree: Path) -> None:
        calls.append(tree)
        tree.mkdir()
        (tree / "file").write_text(str(len(calls)))

    first = cache.get("demo", {"source": 1}, build)
    assert cache.get("demo", {"source": 1}, build) == first and len(calls) == 1
    other = cache.get("demo", {"source": 2}, build)
    assert other != first and len(calls) == 2
    manifest = first.parent / MANIFEST
    os.chmod(manifest, 0o644)
    manifest.write_text(json.dumps({"key": "garbage"}))
    assert cache.get("demo", {"source": 1}, build) == first and len(calls) == 3
    assert (first / "file").read_text() == "3"


def _demo(calls: list[Path]) -> Callable[[Path], None]:
    def build(tree: Path) -> None:
        calls.append(tree)
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "file").write_text(str(len(calls)))

    return build


def test_a_sound_tree_is_verified_by_its_directories_alone(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = TemplateCache(cache_dir)
    calls: list[Path] = []
    first = templates.get("demo", {"source": 1}, _demo(calls))
    monkeypatch.setattr(cache, "_digest", lambda tree: pytest.fail(f"{tree} was hashed"))
    assert templates.get("demo", {"source": 1}, _demo(calls)) == first
    assert len(calls) == 1


def test_an_entry_added_below_the_tree_is_seen_and_rebuilt(cache_dir: Path) -> None:
    templates = TemplateCache(cache_dir)
    calls: list[Path] = []
    first = templates.get("demo", {"source": 1}, _demo(calls))
    sub = first / "sub"
    os.chmod(sub, 0o755)
    (sub / "planted").write_text("not built by us")
    os.chmod(sub, 0o555)  # the mode as built: only the entries differ
    assert templates.get("demo", {"source": 1}, _demo(calls)) == first
    assert len(calls) == 2 and not (sub / "planted").exists()


def test_a_touched_directory_falls_back_to_the_hash(cache_dir: Path) -> None:
    """A directory's stamp moved but nothing in it changed (a backup restored its
    times, say): the hash of every path decides, and it is the same."""
    templates = TemplateCache(cache_dir)
    calls: list[Path] = []
    first = templates.get("demo", {"source": 1}, _demo(calls))
    os.utime(first / "sub", (0, 0))
    assert templates.get("demo", {"source": 1}, _demo(calls)) == first
    assert len(calls) == 1


def test_a_manifest_without_stamps_is_verified_by_the_hash(cache_dir: Path) -> None:
    """Entries built before the stamps existed stay usable."""
    templates = TemplateCache(cache_dir)
    calls: list[Path] = []
    first = templates.get("demo", {"source": 1}, _demo(calls))
    manifest = first.parent / MANIFEST
    data = json.loads(manifest.read_text())
    del data["dirs"]
    os.chmod(manifest, 0o644)
    manifest.write_text(json.dumps(data))
    assert templates.get("demo", {"source": 1}, _demo(calls)) == first
    assert len(calls) == 1
    os.chmod(first / "sub", 0o755)
    (first / "sub" / "file").unlink()
    assert templates.get("demo", {"source": 1}, _demo(calls)) == first
    assert len(calls) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid pool serves root's sessions only")
def test_the_scheme_probe_is_kept_whichever_uid_of_the_pool_ran_it(cache_dir: Path) -> None:
    session_python(cache_dir)
    built = entries(cache_dir)
    held = uids.lease()  # the next session gets another uid of the pool
    try:
        session_python(cache_dir)
    finally:
        held.release()
    assert entries(cache_dir) == built, "a session with another pool uid probed again"


def _counted_scheme_probes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The interpreters the session asks for their schemes, in order (the
    real probe still runs)."""
    from pytest_installperm import session as session_module

    asked: list[Path] = []
    query = session_module.query_schemes

    def counted(python: Path, *args: object, **kwargs: object) -> dict[str, object]:
        asked.append(python)
        return query(python, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session_module, "query_schemes", counted)
    return asked


def test_the_in_place_scheme_probe_is_kept_across_sessions(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _counted_scheme_probes(monkeypatch)
    paths = []
    for _ in range(2):
        session = Session(cache_dir=cache_dir)
        factory = InstallPerm(session)
        try:
            env = factory.system(externally_managed=False, mode="in-place")
            paths.append({k: os.path.relpath(v, env.root) for k, v in env.paths("user").items()})
        finally:
            factory.close()
            session.close()
        if len(paths) == 1:
            assert asked, "the first session did not ask the base for its schemes"
            asked.clear()
    assert asked == [], "a second session asked the base again"
    assert paths[0] == paths[1]


def test_the_in_place_scheme_probe_is_asked_again_when_the_bases_sites_change(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real interpreter sees its own site directories: a distribution
    installed there (a .pth, a sitecustomize) is a new key, not the old answer."""
    from pytest_installperm import programs

    asked = _counted_scheme_probes(monkeypatch)
    identity = programs.python_identity
    for changed in (False, False, True):
        if changed:  # what installing into the base's site-packages does to its stat
            monkeypatch.setattr(programs, "python_identity", lambda p: [*identity(p), "new"])
        asked.clear()
        session = Session(cache_dir=cache_dir)
        factory = InstallPerm(session)
        try:
            factory.system(externally_managed=False, mode="in-place")
        finally:
            factory.close()
            session.close()
    assert asked, "the base's sites changed, yet its old answer was used"


def test_concurrent_sessions_build_once(cache_dir: Path) -> None:
    cache = TemplateCache(cache_dir)
    calls: list[int] = []
    found: list[Path] = []

    def build(tree: Path) -> None:
        calls.append(1)
        time.sleep(0.2)
        tree.mkdir()
        (tree / "file").write_text("whole")

    def worker() -> None:
        found.append(cache.get("demo", {"source": 1}, build))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(found)) == 1
    assert (found[0] / "file").read_text() == "whole"
    assert not [p for p in (cache_dir / TEMPLATES).iterdir() if p.name.startswith(".build-")]


def test_a_cache_others_can_write_is_refused(cache_dir: Path) -> None:
    (cache_dir / TEMPLATES).mkdir(parents=True)
    os.chmod(cache_dir / TEMPLATES, 0o777)
    with pytest.raises(CacheError, match="is writable by others"):
        TemplateCache(cache_dir).get("demo", {}, lambda tree: tree.mkdir())


def test_the_clear_option_removes_the_cache(pytester: pytest.Pytester, cache_dir: Path) -> None:
    cache = TemplateCache(cache_dir)
    tree = cache.get("demo", {"source": 1}, lambda tree: tree.mkdir())
    assert tree.name == TREE and tree.is_dir()
    other = cache_dir / "releases"  # another cache of the plugin's: not ours to remove
    other.mkdir()
    pytester.makepyfile("def test_nothing():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--installperm-clear-cache",
        f"--installperm-cache-dir={cache_dir}",
    )
    result.assert_outcomes(passed=1)
    assert not tree.exists() and other.is_dir()
    assert entries(cache_dir) == {}


def test_a_normal_users_cache_is_reused_and_cleared(unprivileged) -> None:
    """As a normal user: the default cache under XDG_CACHE_HOME, sealed 0555 dirs."""
    inner = unprivileged.runpytest(
        """
        import os
        from pathlib import Path
        from pytest_installperm import InstallPerm
        from pytest_installperm.cache import TemplateCache, default_cache_dir
        from pytest_installperm.session import Session

        def build_once():
            session = Session()
            factory = InstallPerm(session)
            try:
                env = factory.system(externally_managed=False, mode="relocated")
                assert env.backend == "chmod"
                assert env.run([env.python, "-c", "import json"]).returncode == 0
            finally:
                factory.close()
                session.close()

        def test_reuse():
            assert os.geteuid() != 0
            assert default_cache_dir() == Path(os.environ["XDG_CACHE_HOME"], "pytest-installperm")
            root = default_cache_dir() / "templates"
            build_once()
            first = {p.name: p.stat().st_ino for p in root.iterdir()}
            python = [root / n / "tree" for n in first if n.startswith("python-")]
            assert python and not os.stat(python[0]).st_mode & 0o222
            build_once()
            assert {p.name: p.stat().st_ino for p in root.iterdir()} == first
            assert TemplateCache(root.parent).clear()
            assert [p.name for p in root.iterdir()] == [".lock"]
        """
    )
    inner.assert_outcomes(passed=1)


def test_long_unused_entries_go_when_another_is_built(cache_dir: Path) -> None:
    cache = TemplateCache(cache_dir)
    old = cache.get("demo", {"source": 1}, lambda tree: tree.mkdir())
    kept = cache.get("demo", {"source": 2}, lambda tree: tree.mkdir())
    month_ago = time.time() - 40 * 24 * 3600
    os.utime(old.parent, (month_ago, month_ago))
    os.utime(kept.parent, (month_ago, month_ago))
    assert cache.get("demo", {"source": 2}, lambda tree: tree.mkdir()) == kept  # used again
    assert old.parent.exists(), "a warm use removed something"
    cache.get("demo", {"source": 3}, lambda tree: tree.mkdir())
    assert not old.parent.exists() and kept.parent.exists()
