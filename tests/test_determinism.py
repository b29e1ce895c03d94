"""The same scenario, run 100 times, gives the same outcome and change set.

Why uv: a real installer whose run costs about 0.1 s, so 100 runs fit the CI
budget, and which writes a non-trivial tree (package, dist-info with RECORD,
INSTALLER and REQUESTED, a console script) through the same engine path pip
takes: sandbox, lock, contained child, change tracking. ``--no-cache`` keeps
uv's cache (whose entries have random names by design) in a temporary
directory it removes itself, so only the installation is compared. Each run
gets a fresh environment: determinism of the *engine* means equal inputs give
equal results, which a reused environment would not test.

The compared value is the run's status plus its change set as sorted lines
with paths relative to the sandbox root (each sandbox has its own name). The
scratch roles (tmp, cache) are left out: uv names its lock file there after a
hash of the interpreter's path, which differs per sandbox by design.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pytest_installperm import InstallPerm, RunResult

RUNS = 100


SCRATCH = ("tmp", "cache")


def _fingerprint(result: RunResult) -> tuple[int, tuple[str, ...]]:
    env = result.environment
    lines = []
    for mark, paths in (
        ("+", result.changes.created),
        ("~", result.changes.modified),
        ("-", result.changes.deleted),
    ):
        lines += [
            f"{mark} {path.relative_to(env.root)}"
            for path in paths
            if env.role_of(path) not in SCRATCH
        ]
    return result.returncode, tuple(sorted(lines))


def test_same_scenario_same_result_100_times(
    installperm: InstallPerm, make_wheel: Callable[..., Path]
) -> None:
    wheel = make_wheel(
        "steady",
        "1.0",
        purelib={"steady/__init__.py": "def main():\n    pass\n"},
        console_scripts={"steady": "steady:main"},
    )
    seen: Counter[tuple[int, tuple[str, ...]]] = Counter()
    for _ in range(RUNS):
        env = installperm.system(externally_managed=False, locked=())
        result = env.run(
            [
                "uv",
                "pip",
                "install",
                "--offline",
                "--no-cache",
                "--no-deps",
                "--python",
                env.python,
                "--system",
                wheel,
            ]
        )
        assert result.returncode == 0, result.describe()
        assert not result.outside, result.describe()
        seen[_fingerprint(result)] += 1
        env.remove()
    assert len(seen) == 1, "runs differ:\n" + "\n\n".join(
        f"{count} runs:\n" + "\n".join(lines) for (_, lines), count in seen.items()
    )
    ((_status, lines),) = seen
    assert any(line.endswith("steady/__init__.py") for line in lines), lines
    assert any(line.endswith("/RECORD") for line in lines), lines
