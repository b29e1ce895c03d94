"""releases.py: NAME==VERSION fetched once, cached, verified on every use; NAME@PATH found.

Most tests fetch from a local "index" (a find-links directory holding a wheel
built here, the host's pip told to use only it), so they are fast and offline;
one fetches a real pip release from the index this machine's pip is configured
for, and runs it in a sandbox as the dropped uid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import threading
from pathlib import Path

import pytest
from packaging.version import Version

from pytest_installperm import Environment, fit, releases
from pytest_installperm.installers import Context, parse_all
from pytest_installperm.releases import Origin, ReleaseError, parse_origin
from pytest_installperm.wheels import build_wheel

V1 = Version("1.0")


@pytest.fixture
def index(tmp_path: Path) -> dict[str, str]:
    """The environment of a host pip whose only index is a directory with demo 1.0."""
    links = tmp_path / "links"
    links.mkdir()
    build_wheel(links, "demo", "1.0", purelib={"demo/__init__.py": "__version__ = '1.0'\n"})
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(links),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


@pytest.fixture
def unreachable() -> dict[str, str]:
    """A host pip whose index is a closed local port."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pip==24.0", Origin("pip", version=Version("24.0"))),
        (" uv == 0.2.0 ", Origin("uv", version=Version("0.2.0"))),
        ("pip@/src/pip", Origin("pip", path=Path("/src/pip"))),
        ("pip", None),
        ("mine=python -m pip install {wheel}", None),
        ("pipsrc=pip:{python} /src/pip install {flags} {wheel}", None),
    ],
)
def test_parse_origin(spec, expected):
    assert parse_origin(spec) == expected


@pytest.mark.parametrize(
    ("spec", "words"), [("pip==NOPE", "'NOPE' is not a version"), ("pip==", "nothing after '=='")]
)
def test_parse_origin_refuses_bad_values_quoting_them(spec, words):
    with pytest.raises(ReleaseError, match=words) as info:
        parse_origin(spec)
    assert repr(spec) in str(info.value)


def test_fetch_downloads_once_records_the_hash_and_reuses_the_cache(tmp_path, index, unreachable):
    cache = tmp_path / "cache"
    release = releases.fetch("demo", V1, cache=cache, env=index)
    assert release.wheel.name == "demo-1.0-py3-none-any.whl"
    assert release.sha256 == releases.sha256_of(release.wheel)
    record = json.loads((release.wheel.parent / releases.RECORD_NAME).read_text())
    assert record["sha256"] == release.sha256
    assert os.stat(cache).st_mode & 0o777 == 0o755
    assert os.stat(release.wheel).st_mode & 0o222 == 0  # read-only
    # With the index gone, the cached, verified wheel is still served.
    assert releases.fetch("demo", V1, cache=cache, env=unreachable) == release
    assert not [p for p in cache.iterdir() if p.name.startswith(".fetch-")]


def test_a_corrupt_cached_wheel_is_fetched_again(tmp_path, index):
    cache = tmp_path / "cache"
    release = releases.fetch("demo", V1, cache=cache, env=index)
    os.chmod(release.wheel, 0o644)
    release.wheel.write_bytes(b"not a wheel")
    again = releases.fetch("demo", V1, cache=cache, env=index)
    assert again == release
    assert releases.sha256_of(again.wheel) == release.sha256


def test_a_corrupt_cached_wheel_without_an_index_is_refused_naming_it(tmp_path, index, unreachable):
    cache = tmp_path / "cache"
    release = releases.fetch("demo", V1, cache=cache, env=index)
    os.chmod(release.wheel, 0o644)
    with open(release.wheel, "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(ReleaseError) as info:
        releases.fetch("demo", V1, cache=cache, env=unreachable)
    message = str(info.value)
    assert f"cached wheel {release.wheel} is corrupt" in message
    assert "demo==1.0" in message


def test_the_index_serving_other_bytes_than_recorded_is_refused(tmp_path, index):
    cache = tmp_path / "cache"
    release = releases.fetch("demo", V1, cache=cache, env=index)
    record = release.wheel.parent / releases.RECORD_NAME
    os.chmod(record, 0o644)
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "sha256": "0" * 64}))
    with pytest.raises(ReleaseError, match="the index now serves a different file"):
        releases.fetch("demo", V1, cache=cache, env=index)


def test_an_unreachable_index_names_the_release_and_pips_words(tmp_path, unreachable):
    with pytest.raises(ReleaseError) as info:
        releases.fetch("demo", V1, cache=tmp_path / "cache", env=unreachable)
    message = str(info.value)
    assert "demo==1.0" in message
    assert "could not get it from its configured index" in message
    assert not list((tmp_path / "cache").glob(".fetch-*"))


def test_a_version_the_index_does_not_have_is_refused(tmp_path, index):
    with pytest.raises(ReleaseError, match=r"demo==9\.9.*No matching distribution"):
        releases.fetch("demo", Version("9.9"), cache=tmp_path / "cache", env=index)


def test_a_cache_others_can_write_is_refused(tmp_path, index):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    with pytest.raises(ReleaseError, match="writable by group or others"):
        releases.fetch("demo", V1, cache=cache, env=index)


def test_concurrent_fetches_download_once_and_agree(tmp_path, index):
    cache = tmp_path / "cache"
    results: list[releases.Release] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(releases.fetch("demo", V1, cache=cache, env=index))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert len(set(results)) == 1
    assert sorted(p.name for p in cache.iterdir()) == [".lock", "demo-1.0"]


def test_cache_dir_is_root_owned_and_shared_as_root_else_the_users():
    if os.geteuid() == 0:
        assert releases.cache_dir() == Path("/var/cache/pytest-installperm")
    else:
        assert releases.cache_dir().name == "pytest-installperm"
        assert str(releases.cache_dir()).startswith(os.path.expanduser("~"))


# ---------------------------------------------------------------------------
# NAME@PATH and the per-session copy
# ---------------------------------------------------------------------------


def _package(root: Path, name: str = "pip", version: str = "99.0") -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(f'__version__ = "{version}"\n')
    return root


@pytest.mark.parametrize("layout", ["tree", "package-dir", "checkout"])
def test_path_finds_a_tree_a_package_or_a_checkout(tmp_path, layout):
    src = tmp_path / "src-tree"
    if layout == "checkout":
        _package(src / "src")
        (src / "pyproject.toml").write_text("[project]\nname = 'pip'\n")
        path = src
    else:
        _package(src)
        path = src / "pip" if layout == "package-dir" else src
    code = releases.provide(Origin("pip", path=path), tmp_path / "copy")
    assert code.lib is not None
    assert (code.lib / "pip" / "__init__.py").read_text() == '__version__ = "99.0"\n'
    assert code.version == "99.0"
    assert list((code.lib / "pip" / "__pycache__").glob("__init__.*.pyc"))


def test_path_follows_an_editable_install_to_its_source(tmp_path):
    """flit's editable install leaves a .pth file and a dist-info naming the source."""
    checkout = _package(tmp_path / "checkout" / "src").parent
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    dist_info = site / "pip-99.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: pip\nVersion: 99.0\n")
    url = {"url": checkout.as_uri(), "dir_info": {"editable": True}}
    (dist_info / "direct_url.json").write_text(json.dumps(url))
    (site / "pip.pth").write_text(str(checkout / "src") + "\n")
    assert releases.installed_location("pip", site) == checkout / "src"
    code = releases.provide(Origin("pip", path=tmp_path / "venv"), tmp_path / "copy")
    assert code.lib is not None
    assert (code.lib / "pip" / "__init__.py").is_file()


def test_path_to_a_program_is_copied_executable(tmp_path):
    program = tmp_path / "uv"
    program.write_text("#!/bin/sh\necho uv 0.0.1\n")
    program.chmod(0o700)
    code = releases.provide(Origin("uv", path=program), tmp_path / "copy")
    assert code.bin is not None
    assert os.stat(code.bin / "uv").st_mode & 0o777 == 0o755
    assert code.lib is None


@pytest.mark.parametrize("what", ["empty", "missing", "file"])
def test_path_that_is_not_an_installer_is_refused_naming_it(tmp_path, what):
    path = tmp_path / "thing"
    if what == "empty":
        path.mkdir()
    elif what == "file":
        path.write_text("hello")
    with pytest.raises(ReleaseError) as info:
        releases.provide(Origin("pip", path=path), tmp_path / "copy")
    message = str(info.value)
    assert f"pip@{path}" in message
    assert "is not an installer" in message
    assert ("does not exist" in message) == (what == "missing")


def test_a_wheel_without_the_installer_is_refused(tmp_path):
    wheel = build_wheel(tmp_path, "demo", purelib={"demo/__init__.py": ""})
    with pytest.raises(ReleaseError, match="has no package pip/"):
        releases.provide(Origin("pip", path=wheel), tmp_path / "copy")


def test_a_corrupt_wheel_path_is_refused(tmp_path):
    wheel = tmp_path / "pip-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK nonsense")
    with pytest.raises(ReleaseError, match="not a wheel"):
        releases.provide(Origin("pip", path=wheel), tmp_path / "copy")


# ---------------------------------------------------------------------------
# a real release, from the configured index, run in a sandbox
# ---------------------------------------------------------------------------


#: What Python 3.12 removed that these releases import (their Requires-Python
#: admits 3.12): the words they die with there.
GONE_IN_312 = {
    "20.3.4": "No module named 'distutils'",
    "22.3.1": "module 'pkgutil' has no attribute 'ImpImporter'",
}


def _fit(env: Environment, code: releases.Code) -> fit.Fit:
    installer = parse_all([code.origin.describe()])[0]
    ctx = Context(env.python, env.python, *(env.sandbox.work,) * 3, env.home, env.kind, code.lib)
    return fit.check(installer, env, ctx, f"Python {platform.python_version()}")


def _cannot_run_here(reason: str | None, release: str) -> bool:
    """True if ``release`` cannot run on this Python for the known reason (then
    ``reason`` must name the release, the Python and pip's words); False if it can."""
    if sys.version_info < (3, 12):
        assert reason is None, reason
        return False
    assert reason is not None, f"pip=={release} ran on Python {platform.python_version()}"
    assert f"pip=={release} cannot run on " in reason, reason
    assert platform.python_version() in reason and GONE_IN_312[release] in reason, reason
    return True


def test_a_real_pip_release_runs_in_the_sandbox_as_the_child_uid(installperm, tmp_path):
    origin = Origin("pip", version=Version("20.3.4"))
    code = releases.provide(origin, tmp_path / "copy")
    assert (code.origin, code.version) == (origin, "20.3.4")
    assert code.runs_on("3.11.7") is None
    env = installperm.system(locked=())
    shutil.copytree(code.lib, env.sandbox.work / "pip-lib")  # a readable place of its own
    code = dataclasses.replace(code, lib=env.sandbox.work / "pip-lib")
    found = _fit(env, code)
    if _cannot_run_here(found.reason, "20.3.4"):
        pytest.skip(str(found.reason))
    assert found.version == "20.3.4"
    result = env.run(
        [env.python, "-m", "pip", "--version"],
        env={"PYTHONPATH": str(env.sandbox.work / "pip-lib")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pip 20.3.4 from ")


PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"


@pytest.mark.skipif(
    not list(PYENV.glob("3.12.*/bin/python3.12")), reason=f"no Python 3.12 in {PYENV}"
)
def test_releases_that_cannot_run_on_the_interpreter_skip_every_cell_naming_why(pytester):
    """pip 20.3.4 and 22.3.1 on Python 3.12 (distutils, pkgutil.ImpImporter): asked
    once, before any cell, every cell of the pair is a skip naming the release, the
    interpreter and pip's words; pip 23.3.2 runs there beside them."""
    python = sorted(PYENV.glob("3.12.*/bin/python3.12"))[-1]
    pytester.makeini("[pytest]\n")
    scenarios = ("fallback-to-user", "venv-plain")
    result = pytester.runpytest(
        "--installperm",
        f"--installperm-python={python}",
        *(f"--installperm-installer=pip=={v}" for v in (*GONE_IN_312, "23.3.2")),
        "--installperm-report=report.json",
        "-k",
        " or ".join(scenarios),
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    report = json.loads((pytester.path / "report.json").read_text())
    ran = {(r["installer"], r["scenario"]): r for r in report["results"]}
    assert {(r["verdict"], r["installer_version"]) for r in ran.values()} == {("passed", "23.3.2")}
    assert sorted(ran) == [("pip==23.3.2", s) for s in scenarios]
    reasons: dict[str, set[str]] = {}
    for row in report["skipped"]:
        reasons.setdefault(row["installer"], set()).add(row["reason"])
    assert sorted(reasons) == [f"pip=={v}" for v in GONE_IN_312]
    for version, words in GONE_IN_312.items():
        (reason,) = reasons[f"pip=={version}"]  # one reason for every cell: the pair's
        assert reason.startswith(f"pip=={version} cannot run on {python} (3.12"), reason
        assert words in reason, reason


def test_requires_python_names_release_and_interpreter(tmp_path):
    code = releases.provide(Origin("pip", version=Version("26.1")), tmp_path / "copy")
    reason = code.runs_on("3.9.18")
    assert reason is not None
    assert "pip==26.1" in reason
    assert "3.9.18" in reason
    assert code.runs_on("3.11.7") is None


def test_the_session_copies_an_editable_pip_from_its_source(tmp_path):
    """copy_pip used to fail with FileNotFoundError on site-packages/pip."""
    import importlib.metadata

    from pytest_installperm.pip_copy import _package_dir

    checkout = _package(tmp_path / "checkout" / "src").parent
    site = tmp_path / "site-packages"
    dist_info = site / "pip-99.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: pip\nVersion: 99.0\n")
    (dist_info / "direct_url.json").write_text(json.dumps({"url": checkout.as_uri()}))
    dist = importlib.metadata.PathDistribution(dist_info)
    assert _package_dir(dist) == checkout / "src" / "pip"
    (dist_info / "direct_url.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"pip is installed in .*site-packages"):
        _package_dir(dist)


# ---------------------------------------------------------------------------
# bad input on the command line: a usage error naming the release or path
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("pip==NOPE", "*'pip==NOPE'*'NOPE' is not a version*"),
        ("nosuch==1.0", "*'nosuch==1.0'*unknown preset 'nosuch'*"),
        ("pip@/nonexistent/pip", "*pip@/nonexistent/pip: /nonexistent/pip is not an installer*"),
    ],
)
def test_bad_versioned_installers_are_usage_errors(pytester, spec, words):
    result = pytester.runpytest("--installperm", f"--installperm-installer={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([words])


def test_an_unreachable_index_is_a_usage_error_naming_the_release(pytester, monkeypatch):
    for key, value in {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(key, value)
    result = pytester.runpytest("--installperm", "--installperm-installer=pip==0.0.0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pip==0.0.0.1*could not get it from its configured index*"])


def test_two_releases_run_side_by_side_and_report_what_ran(pytester):
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest(
        "--installperm",
        "--installperm-installer=pip==20.3.4",
        "--installperm-installer=pip",
        "--installperm-report=report.json",
        "-k",
        "fallback-to-user",
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    report = json.loads((pytester.path / "report.json").read_text())
    rows = {r["installer"]: r for r in report["results"]}
    assert rows["pip"]["installer_version"] == importlib_metadata_version("pip")
    skipped = {r["installer"]: r["reason"] for r in report["skipped"]}
    if not _cannot_run_here(skipped.get("pip==20.3.4"), "20.3.4"):
        assert rows["pip==20.3.4"]["installer_version"] == "20.3.4"
    assert {r["verdict"] for r in rows.values()} == {"passed"}


def importlib_metadata_version(name: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(name)
