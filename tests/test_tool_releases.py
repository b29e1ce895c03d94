"""toolvenvs.py: a Python tool at a release or from a path, with its dependencies.

A small tool built here (a wheel with a console script that needs another
wheel, both in a local find-links "index") shows the build: once per key into
the persistent cache, reused by the next session, rebuilt when altered, and
runnable by the dropped uid. A real older poetry release then runs in the
matrix beside the pinned one, and bad specs are usage errors naming the input.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from pytest_installperm import InstallPerm
from pytest_installperm.cache import TEMPLATES, TREE
from pytest_installperm.fixtures import get_session
from pytest_installperm.releases import Origin, ReleaseError
from pytest_installperm.session import Session
from pytest_installperm.toolvenvs import WHEELS_RECORD, source_of
from pytest_installperm.wheels import build_wheel

GREET = (
    "import sys\n"
    "import greet_helper\n"
    "def main():\n"
    "    print('greet', greet_helper.WORD, sys.prefix)\n"
)


@pytest.fixture
def tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The wheel of a tool ``greet`` that requires ``greet-helper``, and a host
    pip whose only index is a directory holding greet-helper."""
    links = tmp_path / "links"
    links.mkdir()
    build_wheel(links, "greet-helper", "1.0", purelib={"greet_helper/__init__.py": "WORD = 'hi'\n"})
    wheel = build_wheel(
        tmp_path,
        "greet",
        "2.0",
        purelib={"greet/__init__.py": GREET},
        console_scripts={"greet": "greet:main"},
    )
    _add_requirement(wheel, "greet-helper")
    for key, value in {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(links),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }.items():
        monkeypatch.setenv(key, value)
    return wheel


def _add_requirement(wheel: Path, requirement: str) -> None:
    """Rewrite ``wheel`` with ``Requires-Dist: requirement`` (and a RECORD to match)."""
    import base64
    import hashlib
    import zipfile

    with zipfile.ZipFile(wheel) as old:
        members = {name: old.read(name) for name in old.namelist()}
    metadata = next(n for n in members if n.endswith(".dist-info/METADATA"))
    members[metadata] += f"Requires-Dist: {requirement}\n".encode()
    record = next(n for n in members if n.endswith(".dist-info/RECORD"))
    lines = []
    for name, data in members.items():
        if name == record:
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    members[record] = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as new:
        for name, data in members.items():
            new.writestr(name, data)


@pytest.fixture
def cache_dir(request: pytest.FixtureRequest) -> Path:
    return get_session(request.config).root.new_dir("cache-") / "plugin-cache"


def _tool_entries(cache_dir: Path) -> dict[str, int]:
    return {
        p.name: (p / TREE).stat().st_ino
        for p in (cache_dir / TEMPLATES).iterdir()
        if p.name.startswith("tool-")
    }


def _run_greet(cache_dir: Path, wheel: Path) -> tuple[Path, str, str]:
    """In a fresh session: build (or reuse) greet's venv, run it as the child."""
    session = Session(cache_dir=cache_dir)
    factory = InstallPerm(session)
    try:
        code = session.release(Origin("greet", path=wheel), constraints=(), python=None)
        assert code.bin is not None and code.lib is not None
        env = factory.system(externally_managed=False)
        result = env.run([code.bin / "greet"])
        assert result.returncode == 0, result.describe()
        assert code.version == "2.0"
        return code.lib, result.stdout, env.backend
    finally:
        factory.close()
        session.close()


def test_a_tool_is_built_with_its_dependencies_once_and_reused(tool, cache_dir):
    site, out, backend = _run_greet(cache_dir, tool)
    word, prefix = out.split()[1:3]
    assert word == "hi"  # its requirement came from the index, into its venv
    assert cache_dir in site.parents  # the persistent cache, not the session
    assert Path(prefix) == site.parents[2]  # it runs in a venv of its own
    names = sorted(p.name for p in site.iterdir())
    assert names == ["greet", "greet-2.0.dist-info", "greet_helper", "greet_helper-1.0.dist-info"]
    record = json.loads((site.parents[3] / WHEELS_RECORD).read_text())
    assert sorted(record) == ["greet-2.0-py3-none-any.whl", "greet_helper-1.0-py3-none-any.whl"]
    assert all(len(digest) == 64 for digest in record.values())
    assert list((site / "greet" / "__pycache__").iterdir()), "no bytecode for the child"
    if backend == "privdrop":
        assert os.stat(site).st_mode & 0o222 == 0  # sealed
    built = _tool_entries(cache_dir)
    assert len(built) == 1
    _run_greet(cache_dir, tool)
    assert _tool_entries(cache_dir) == built, "a warm session rebuilt the tool venv"


def test_an_altered_tool_venv_is_rebuilt(tool, cache_dir):
    site, _, _ = _run_greet(cache_dir, tool)
    built = _tool_entries(cache_dir)
    planted = site / "greet" / "planted.py"
    os.chmod(planted.parent, 0o755)
    planted.write_text("print('planted')\n")
    _run_greet(cache_dir, tool)
    rebuilt = _tool_entries(cache_dir)
    assert rebuilt.keys() == built.keys()
    assert rebuilt != built, "an altered tree was used as it was"
    assert not planted.exists()


def test_a_changed_wheel_is_a_new_entry(tool, cache_dir, tmp_path):
    _run_greet(cache_dir, tool)
    other = tmp_path / "other" / tool.name
    other.parent.mkdir()
    shutil.copy(tool, other)
    with open(other, "ab") as stream:  # the same files, other bytes: another sha256
        stream.write(b"\0")
    _run_greet(cache_dir, other)
    assert len(_tool_entries(cache_dir)) == 2


def test_missing_dependencies_name_the_tool_and_pips_words(tool, cache_dir, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", str(tool.parent / "nothing-here"))
    session = Session(cache_dir=cache_dir)
    try:
        with pytest.raises(
            ReleaseError, match=r"greet \(greet-2\.0-py3-none-any\.whl\).*greet-helper"
        ):
            session.release(Origin("greet", path=tool), constraints=(), python=None)
        assert _tool_entries(cache_dir) == {}
        assert not [p for p in (cache_dir / TEMPLATES).iterdir() if p.name.startswith(".build-")]
    finally:
        session.close()


# ---------------------------------------------------------------------------
# what NAME@PATH may name for a tool
# ---------------------------------------------------------------------------


def test_a_tools_path_is_a_wheel_a_program_or_a_venv(tmp_path):
    pdm = Path(sys.executable).parent / "pdm"
    if not pdm.is_file():
        pytest.skip(f"pdm is not installed next to {sys.executable} (the test extra)")
    assert source_of(Origin("pdm", path=pdm)).kind == "installed"
    assert source_of(Origin("pdm", path=pdm.parent.parent)).path == pdm
    wheel = tmp_path / "pdm-9.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert source_of(Origin("pdm", path=wheel)).kind == "wheel"


@pytest.mark.parametrize(
    ("what", "words"),
    [
        ("missing", r"does not exist"),
        ("source-tree", r"a source tree or checkout is not supported for poetry: build a wheel"),
        ("other-wheel", r"is a wheel of 'demo', not of 'poetry'"),
        ("other-tool", r"runs the module 'pip\._internal\.cli\.main', not poetry"),
        ("binary", r"is not a Python console script"),
    ],
)
def test_a_path_that_is_not_that_tool_is_refused_naming_it(tmp_path, what, words):
    path = tmp_path / what
    if what == "source-tree":
        (path / "src" / "poetry").mkdir(parents=True)
        (path / "src" / "poetry" / "__init__.py").write_text("")
    elif what == "other-wheel":
        path = build_wheel(tmp_path, "demo", "1.0", purelib={"demo/__init__.py": ""})
    elif what == "other-tool":
        path.write_text(f"#!{sys.executable}\nfrom pip._internal.cli.main import main\nmain()\n")
    elif what == "binary":
        path.write_bytes(b"\x7fELF\0")
    with pytest.raises(ReleaseError, match=words) as caught:
        source_of(Origin("poetry", path=path))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("poetry==NOPE", "*'poetry==NOPE'*'NOPE' is not a version*"),
        (
            "hatch@/nonexistent/hatch",
            "*hatch@/nonexistent/hatch: /nonexistent/hatch does not exist*",
        ),
        ("pdm@{here}", "*pdm@*a source tree or checkout is not supported for pdm*"),
    ],
)
def test_bad_tool_specs_are_usage_errors(pytester, spec, words):
    (pytester.path / "src" / "pdm").mkdir(parents=True)
    (pytester.path / "src" / "pdm" / "__init__.py").write_text("")
    spec = spec.format(here=pytester.path)
    result = pytester.runpytest("--installperm", f"--installperm-installer={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([words])


# ---------------------------------------------------------------------------
# a real older release in the matrix, beside the pinned one
# ---------------------------------------------------------------------------

OLDER_POETRY = "2.4.3"


def test_an_older_poetry_release_runs_beside_the_pinned_one(pytester):
    pinned = importlib.metadata.version("poetry")
    pytester.makeini("[pytest]\n")
    # In a subprocess: the matrix's classes must not meet copies of them that
    # earlier in-process runs of this worker imported.
    result = pytester.runpytest_subprocess(
        "--installperm",
        f"--installperm-installer=poetry=={OLDER_POETRY}",
        "--installperm-installer=poetry",
        "--installperm-report=report.json",
        "-k",
        "fallback-to-user or system-writable",
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(
        [f"installers: poetry=={OLDER_POETRY} {OLDER_POETRY}, poetry {pinned}"]
    )
    rows = json.loads((pytester.path / "report.json").read_text())["results"]
    seen = {(r["scenario"], r["installer"]): r for r in rows}
    for scenario, outcome in (("fallback-to-user", "user"), ("system-writable", "system")):
        older, newer = seen[(scenario, f"poetry=={OLDER_POETRY}")], seen[(scenario, "poetry")]
        assert (older["installer_version"], newer["installer_version"]) == (OLDER_POETRY, pinned)
        # Both agree with the scenario; on a Debian-patched interpreter the
        # fallback is poetry's declared break (its user site is dist-packages).
        for row in (older, newer):
            assert row["outcome"] == outcome and row["agrees"], row
            assert row["verdict"] in ("passed", "xfailed"), row
        assert (older["verdict"], older["broken"]) == (newer["verdict"], newer["broken"])
