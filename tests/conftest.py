"""Shared fixtures of our own test suite.

The important one is ``unprivileged``: CI runs as root, yet the non-root code
path (the ``chmod`` backend) must run in CI too. It runs an inner pytest as an
unprivileged uid, on an interpreter and packages that uid can read, which we
build with the plugin's own engine.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import pytest_installperm
from pytest_installperm import Environment, InstallPerm
from pytest_installperm.fixtures import get_session

#: Distributions the inner pytest needs; their dependencies come along.
RUNNER_ROOTS = ("pytest", "pytest-installperm", "pytest-xdist", "installer", "pyfakefs")

_CLOSING = re.compile(r"^=+ .*\b\d+ \w+.* in [\d.]+s( \([\d:]+\))? =+$")
_OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


@dataclass(frozen=True)
class InnerRun:
    """The outcome of an inner pytest run."""

    returncode: int
    stdout: str
    stderr: str

    def outcomes(self) -> dict[str, int]:
        """Counts from pytest's closing line, e.g. {"passed": 2, "skipped": 1}."""
        # pytest's closing line: "===== 3 passed, 1 skipped in 1.23s =====".
        lines = [ln for ln in self.stdout.splitlines() if _CLOSING.search(ln)]
        found: dict[str, int] = {}
        for count, word in _OUTCOME.findall(lines[-1] if lines else ""):
            found["errors" if word.startswith("error") else word] = int(count)
        return found

    def assert_outcomes(self, **expected: int) -> None:
        got = self.outcomes()
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}, (
            f"inner pytest outcomes {got} != {expected}\n"
            f"{self.stdout[-4000:]}\n{self.stderr[-2000:]}"
        )


def _closure(roots: tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    """The distributions ``roots`` need at run time, found through their metadata."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return [seen[k] for k in sorted(seen)]


def _copy_runner_site(target: Path) -> None:
    """Copy the packages and their dist-info (for entry points) readably."""
    for dist in _closure(RUNNER_ROOTS):
        for file in dist.files or []:
            if str(file).startswith("..") or "__pycache__" in file.parts:
                continue
            source = Path(str(dist.locate_file(file)))
            if source.name.startswith("__editable__") or not source.is_file():
                continue
            (target / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / file)
    # Our own package may be installed editable: its files are not in RECORD.
    own = Path(pytest_installperm.__file__).parent
    shutil.copytree(
        own, target / own.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in [target, *target.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


class Unprivileged:
    """Runs an inner pytest as a normal user: the non-root code path, for real."""

    def __init__(self, env: Environment | None, pytester: pytest.Pytester | None) -> None:
        self.env = env
        self.pytester = pytester

    @property
    def uid(self) -> int:
        return os.geteuid() if self.env is None else self.env.world.owner()[0]

    def runpytest(
        self,
        source: str,
        *args: str,
        timeout: float = 300,
        modules: dict[str, str] | None = None,
        files: tuple[Path, ...] = (),
    ) -> InnerRun:
        """Write ``source`` as a test module (and ``modules`` beside it), copy
        ``files`` into its directory, and run pytest on it as a normal user."""
        code = textwrap.dedent(source)
        if self.env is None:
            assert self.pytester is not None
            self.pytester.makepyfile(test_inner=code, **(modules or {}))
            for file in files:
                shutil.copy2(file, self.pytester.path / file.name)
            # The test file is named explicitly, as in the root branch below.
            test = str(self.pytester.path / "test_inner.py")
            result = self.pytester.runpytest_subprocess(
                "-p", "no:cacheprovider", "-rs", test, *args, timeout=timeout
            )
            return InnerRun(int(result.ret), result.stdout.str(), result.stderr.str())
        work = self.env.sandbox.work
        for old in work.glob("test_inner*.py"):
            old.unlink()
        test = work / "test_inner.py"
        for name, text in {"test_inner": code, **(modules or {})}.items():
            (work / f"{name}.py").write_text(text)
            os.chown(work / f"{name}.py", *self.env.world.owner())
        for file in files:
            shutil.copy2(file, work / file.name)
            os.chown(work / file.name, *self.env.world.owner())
        run = self.env.run(
            [
                self.env.python,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-p",
                "pytester",
                "-rs",
                str(test),
                *args,
            ],
            timeout=timeout,
        )
        return InnerRun(run.returncode, run.stdout, run.stderr)


@pytest.fixture(scope="session")
def unprivileged_env(request: pytest.FixtureRequest) -> Iterator[Environment | None]:
    """As root: an unlocked environment whose children run as an unprivileged uid."""
    if os.geteuid() != 0:
        yield None
        return
    factory = InstallPerm(get_session(request.config))
    env = factory.system(locked=(), backend="privdrop")
    site = get_session(request.config).root.new_dir("runner-site-")
    _copy_runner_site(site)
    (env.paths("system")["purelib"] / "installperm-runner.pth").write_text(f"{site}\n")
    yield env
    factory.close()


@pytest.fixture
def unprivileged(
    unprivileged_env: Environment | None, request: pytest.FixtureRequest
) -> Unprivileged:
    """Run an inner pytest as a non-root user (a dropped uid when we are root)."""
    pytester = request.getfixturevalue("pytester") if unprivileged_env is None else None
    return Unprivileged(unprivileged_env, pytester)


DEMO_SOURCE = "def main() -> None:\n    print('demo ran')\n"


@pytest.fixture
def demo_wheel(make_wheel: Callable[..., Path]) -> Path:
    """A wheel with a package and a console script: the original report's shape."""
    return make_wheel(
        "demo",
        "1.0",
        purelib={"demo/__init__.py": DEMO_SOURCE},
        console_scripts={"demo-cli": "demo:main"},
    )
