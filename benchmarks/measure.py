"""The measurements of the benchmark, one function each, through the public API.

Every function returns plain data (milliseconds, counts, reasons) and removes
everything it created. Timings use ``time.perf_counter``; "median" is over the
timed iterations only, after untimed warm-up ones that pay one-time costs
(session template, pip copy, scheme probe), which are reported separately.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_installperm.changes import Snapshot
from pytest_installperm.environment import Environment, InstallPerm
from pytest_installperm.session import Session

sys.path.insert(0, str(Path(__file__).parent))
from sitegen import populate_site, small_wheel

Result = dict[str, Any]


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def med(values: list[float]) -> float:
    return ms(statistics.median(values))


def spread(values: list[float]) -> Result:
    """Median and the 10th/90th percentiles, in ms."""
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"median": med(values), "p10": ms(pick(0.1)), "p90": ms(pick(0.9)), "n": len(values)}


@contextlib.contextmanager
def session_of(
    backend: str | None,
    basetemp: str | None = None,
) -> Iterator[tuple[Session, InstallPerm]]:
    """A Session and factory, closed (and their directories removed) on exit.

    ``basetemp`` is where the session root goes; None lets the engine choose
    (a tmpfs when one is usable).
    """
    session = Session(backend=backend or "auto", basetemp=basetemp)
    factory = InstallPerm(session, backend=backend)
    try:
        yield session, factory
    finally:
        try:
            factory.close()
        finally:
            session.close()


def _skip_reason(exc: BaseException) -> str:
    return str(getattr(exc, "msg", None) or exc)


# -- overhead of one scenario -------------------------------------------------


def overhead(
    backend: str | None,
    iterations: int,
    warmup: int = 3,
    *,
    basetemp: str | None = None,
    python: str | None = None,
) -> Result:
    """build+lock+snapshot (``system()``), diff (``update()``), teardown (``close()``).

    No installer runs: this is what the plugin adds around one. The first
    build also pays the session's one-time costs, reported as ``session_setup_ms``.
    """
    build: list[float] = []
    diff: list[float] = []
    teardown: list[float] = []
    with session_of(backend, basetemp) as (session, factory):
        start = time.perf_counter()
        try:
            env = factory.system(python=python)
        except pytest.skip.Exception as exc:
            return {"backend": backend or "auto", "available": False, "reason": _skip_reason(exc)}
        except Exception as exc:  # e.g. a backend module that does not exist yet
            return {
                "backend": backend or "auto",
                "available": False,
                "reason": f"{type(exc).__name__}: {exc}",
            }
        setup = time.perf_counter() - start
        name = env.backend
        entries = count_entries(env.root)
        where = str(session.root.path)
        factory.close()
        for i in range(warmup + iterations):
            t0 = time.perf_counter()
            env = factory.system(python=python)
            t1 = time.perf_counter()
            env.snapshot().update()
            t2 = time.perf_counter()
            factory.close()
            t3 = time.perf_counter()
            if i >= warmup:
                build.append(t1 - t0)
                diff.append(t2 - t1)
                teardown.append(t3 - t2)
    total = [a + b + c for a, b, c in zip(build, diff, teardown, strict=True)]
    return {
        "backend": name,
        "available": True,
        "total": spread(total),
        "build_lock_snapshot_ms_median": med(build),
        "diff_ms_median": med(diff),
        "teardown_ms_median": med(teardown),
        "session_setup_ms": ms(setup),
        "sandbox_entries": entries,
        "session_root": where,
        "session_root_fs": fs_type(where),
        "base_python": python or base_python(),
    }


def count_entries(root: Path) -> Result:
    """How many inodes one sandbox creates, by kind (what teardown removes)."""
    counts = {"dirs": 0, "files": 0, "hardlinked_files": 0, "symlinks": 0}
    for directory, dirs, files in os.walk(root):
        counts["dirs"] += 1
        for name in dirs + files:
            st = os.lstat(os.path.join(directory, name))
            if os.path.islink(os.path.join(directory, name)):
                counts["symlinks"] += 1
            elif name in files:
                counts["hardlinked_files" if st.st_nlink > 1 else "files"] += 1
    return counts


#: Functions timed by the breakdown pass: (label, module, attribute path).
BREAKDOWN = (
    ("sandbox dirs   Sandbox.__init__", "pytest_installperm.sandbox", "Sandbox.__init__"),
    ("interpreter    Template.relocate", "pytest_installperm.interpreter", "Template.relocate"),
    ("pip copy       _install_pip", "pytest_installperm.world.build", "_install_pip"),
    (
        "lock           PrivdropBackend.apply",
        "pytest_installperm.backends.privdrop",
        "PrivdropBackend.apply",
    ),
    (
        "lock           ChmodBackend.apply",
        "pytest_installperm.backends.chmod",
        "ChmodBackend.apply",
    ),
    ("snapshot       Snapshot._add_tree", "pytest_installperm.changes", "Snapshot._add_tree"),
    ("diff           Snapshot.update", "pytest_installperm.changes", "Snapshot.update"),
    ("teardown       remove_tree", "pytest_installperm.sandbox", "remove_tree"),
)


def breakdown(backend: str | None, iterations: int, basetemp: str | None = None) -> Result:
    """Median ms per scenario spent in each engine function (instrumented pass).

    Wrapping adds a few microseconds per call, so this pass is separate from
    the one that gives ``overhead_ms_median``. Missing functions (renamed by a
    refactor) are reported as null rather than failing the benchmark.
    """
    import importlib

    spent: dict[str, float] = {}
    restore: list[tuple[Any, str, Any]] = []

    def wrap(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0

        return timed

    found: dict[str, bool] = {}
    for label, module_name, attr in BREAKDOWN:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, leaf = attr.split(".")
            for part in parents:
                owner = getattr(owner, part)
            original = owner.__dict__[leaf] if isinstance(owner, type) else getattr(owner, leaf)
        except (ImportError, AttributeError, KeyError):
            found[label] = False
            continue
        found[label] = True
        restore.append((owner, leaf, original))
        setattr(owner, leaf, wrap(label, original))
    per_iteration: dict[str, list[float]] = {label: [] for label, _m, _a in BREAKDOWN}
    totals: list[float] = []
    try:
        with session_of(backend, basetemp) as (_session, factory):
            factory.system(externally_managed=False)
            factory.close()
            for _ in range(iterations):
                spent.clear()
                t0 = time.perf_counter()
                factory.system(externally_managed=False).snapshot().update()
                factory.close()
                totals.append(time.perf_counter() - t0)
                for label in per_iteration:
                    per_iteration[label].append(spent.get(label, 0.0))
    except pytest.skip.Exception as exc:
        return {"available": False, "reason": _skip_reason(exc)}
    finally:
        for owner, leaf, original in reversed(restore):
            setattr(owner, leaf, original)
    phases = {
        label: (med(values) if found[label] else None) for label, values in per_iteration.items()
    }
    # Snapshot.update re-lists nothing here, so _add_tree time is the take().
    return {"available": True, "total_ms_median": med(totals), "phases_ms_median": phases}


def fs_create_cost(directory: str, n: int = 100) -> Result:
    """Microseconds to create one empty file, directory, symlink and hard link."""
    work = tempfile.mkdtemp(prefix="installperm-bench-fs-", dir=directory)
    try:
        source = os.path.join(work, "source")
        open(source, "wb").close()
        ops: dict[str, Callable[[int], None]] = {
            "file": lambda i: open(os.path.join(work, f"f{i}"), "wb").close(),
            "dir": lambda i: os.mkdir(os.path.join(work, f"d{i}")),
            "symlink": lambda i: os.symlink("source", os.path.join(work, f"s{i}")),
            "hardlink": lambda i: os.link(source, os.path.join(work, f"h{i}")),
        }
        result: Result = {}
        for name, op in ops.items():
            t0 = time.perf_counter()
            for i in range(n):
                op(i)
            result[f"{name}_us"] = round((time.perf_counter() - t0) / n * 1e6, 1)
        return result
    finally:
        shutil.rmtree(work)


def fs_type(path: str) -> str:
    """The filesystem type holding ``path``, from /proc/mounts (longest match)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                mount = fields[1]
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


# -- baselines: a venv per test -----------------------------------------------


def create_venvs(
    argv_for: Callable[[Path], list[str]], work: Path, iterations: int, warmup: int = 1
) -> Result:
    """Wall time of a venv creator, one fresh directory each time, removed after."""
    times: list[float] = []
    for i in range(iterations + warmup):
        target = work / f"venv-{i}"
        t0 = time.perf_counter()
        out = subprocess.run(argv_for(target), capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        shutil.rmtree(target, ignore_errors=True)
        if out.returncode != 0:
            return {"available": False, "reason": f"exit {out.returncode}: {out.stderr[-300:]}"}
        if i >= warmup:  # the first run warms the disk cache (and virtualenv's app-data)
            times.append(elapsed)
    return {"available": True, **spread(times)}


def base_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def venv_argv(target: Path) -> list[str]:
    return [base_python(), "-m", "venv", "--without-pip", str(target)]


def virtualenv_argv(target: Path) -> list[str]:
    return [sys.executable, "-m", "virtualenv", "-q", str(target)]


# -- real installs ---------------------------------------------------------------


def install_argv(installer: str, env: Environment, wheel: Path) -> list[Any]:
    if installer == "uv":
        return [
            "uv",
            "pip",
            "install",
            "--python",
            env.python,
            "--system",
            "--no-index",
            "--no-deps",
            wheel,
        ]
    return [env.python, "-m", "pip", "install", "--no-index", "--no-deps", wheel]


def installs(
    installer: str, wheel: Path, iterations: int, warmup: int = 1, basetemp: str | None = None
) -> Result:
    """One small wheel into a fresh ``system(locked=())`` environment, N times.

    ``*_ms_median`` is the installer process alone (RunResult.duration_s);
    ``run_total`` adds our staging and diff around it.
    """
    child: list[float] = []
    total: list[float] = []
    with session_of(None, basetemp) as (_session, factory):
        for i in range(iterations + warmup):
            env = factory.system(externally_managed=False, locked=())
            t0 = time.perf_counter()
            result = env.run(install_argv(installer, env, wheel))
            elapsed = time.perf_counter() - t0
            if result.returncode != 0:
                return {"available": False, "reason": f"{installer} failed: {result.describe()}"}
            if not result.changes.under("system").created:
                return {"available": False, "reason": f"{installer} installed nothing"}
            factory.close()
            if i >= warmup:  # the first one warms the page cache for the installer
                child.append(result.duration_s)
                total.append(elapsed)
    return {"available": True, "installer": spread(child), "run_total_ms_median": med(total)}


# -- change detection in a large site -----------------------------------------


def detection(n_files: int, rounds: int, work: Path, basetemp: str | None = None) -> Result:
    """Time ``Snapshot.update()`` after a small uv install into a site of N files.

    Per round: ``Snapshot.take(env.root)`` of the populated sandbox (timed as
    the one-time snapshot cost), a real ``uv pip install`` of a new one-module
    wheel into the system site (not timed), then ``update()`` on that snapshot
    (timed: the post-run diff). The install adds entries to site-packages, so
    detection must re-list that directory; all others are only lstat()ed.
    """
    take: list[float] = []
    update: list[float] = []
    created: list[int] = []
    with session_of(None, basetemp) as (_session, factory):
        env = factory.system(externally_managed=False, locked=())
        site = env.paths("system")["purelib"]
        t0 = time.perf_counter()
        files, dirs = populate_site(site, n_files)
        populate = time.perf_counter() - t0
        env.snapshot().update()  # absorb the filler into the environment's own snapshot
        for r in range(rounds):
            wheel = small_wheel(work, f"benchdetect{n_files}r{r}")
            t0 = time.perf_counter()
            snapshot = Snapshot.take(env.root)
            take.append(time.perf_counter() - t0)
            result = env.run(install_argv("uv", env, wheel))
            if result.returncode != 0:
                return {"available": False, "reason": f"uv failed: {result.describe()}"}
            t0 = time.perf_counter()
            changes = snapshot.update()
            update.append(time.perf_counter() - t0)
            close = getattr(snapshot, "close", None)  # frees its watches, if it has any
            if close is not None:
                close()
            created.append(len(changes.created))
            if not any(site in p.parents for p in changes.created):
                return {
                    "available": False,
                    "reason": "Snapshot.update() did not see the installed files",
                }
    return {
        "available": True,
        "files": files,
        "dirs": dirs,
        "populate_s": round(populate, 2),
        "detect_ms_median": med(update),
        "snapshot_ms_median": med(take),
        "created_per_install": statistics.median(created),
        "rounds": rounds,
    }


# -- out-of-process parts -----------------------------------------------------


def plugin_options(work: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout


def matrix(
    work: Path, xdist: int | None, timeout: float = 900.0, basetemp: str | None = None
) -> Result:
    """Wall time of the built-in matrix for pip and uv in a temp directory.

    ``items_s`` sums pytest's per-item durations (setup, call and teardown):
    the wall time minus it (serially) is the fixed part, start-up and session
    setup; under ``-n 2`` it also shows how much slower items get when two
    workers share the cores.
    """
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--durations=0",
        "--durations-min=0",
        "--installperm",
        "--installperm-installer=pip",
        "--installperm-installer=uv",
    ]
    if xdist:
        argv += ["-n", str(xdist)]
    if basetemp is not None:
        argv.append(f"--installperm-basetemp={basetemp}")
    project = work / f"matrix-{xdist or 0}"
    project.mkdir()
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(
            argv, cwd=project, capture_output=True, text=True, check=False, timeout=timeout
        )
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"timed out after {timeout:.0f}s"}
    finally:
        shutil.rmtree(project, ignore_errors=True)
    summary = (out.stdout.strip().splitlines() or [""])[-1]
    if out.returncode not in (0, 1):
        return {
            "available": False,
            "reason": f"pytest exited {out.returncode}: {summary or out.stderr[-300:]}",
        }
    durations = [
        float(m.group(1))
        for m in re.finditer(r"^([0-9.]+)s (?:setup|call|teardown) ", out.stdout, re.MULTILINE)
    ]
    return {
        "available": True,
        "seconds": round(elapsed, 2),
        "summary": summary,
        "returncode": out.returncode,
        "items_s": round(sum(durations), 2),
        "fixed_s": round(elapsed - sum(durations), 2) if not xdist else None,
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
    }


def matrix_rounds(
    work: Path, rounds: int, progress: Callable[[str], None], basetemp: str | None = None
) -> tuple[Result, Result, float | None]:
    """``rounds`` pairs of :func:`matrix` runs, serial then ``-n 2``, alternated
    so that both see the same machine; each side is its median run (by wall
    time), with every round's seconds and the load average before it. Last,
    the median of the pairs' ratios (serial over ``-n 2``): the machine's
    speed drifts between runs (the same serial matrix took 15.6 to 19.9 s of
    CPU in one hour), which a pair run back to back shares and the medians of
    the two sides taken apart do not."""
    runs: dict[int | None, list[Result]] = {None: [], 2: []}
    for i in range(rounds):
        for xdist in (None, 2):
            progress(f"matrix, {'-n 2' if xdist else 'serial'}, round {i + 1} of {rounds}")
            load = os.getloadavg()[0]
            result = matrix(work, xdist, basetemp=basetemp)
            result["load_before"] = round(load, 2)
            runs[xdist].append(result)
    sides = []
    for xdist in (None, 2):
        done = [r for r in runs[xdist] if r.get("available")]
        if len(done) < len(runs[xdist]):
            sides.append(next(r for r in runs[xdist] if not r.get("available")))
            continue
        ordered = sorted(done, key=lambda r: float(r["seconds"]))
        middle = dict(ordered[(len(ordered) - 1) // 2])
        middle["rounds_s"] = [r["seconds"] for r in done]
        middle["rounds_load"] = [r["load_before"] for r in done]
        middle["rounds_cpu_s"] = [r["cpu_s"] for r in done]
        sides.append(middle)
    pairs = [
        float(s["seconds"]) / float(p["seconds"])
        for s, p in zip(runs[None], runs[2], strict=True)
        if s.get("available") and p.get("available") and p["seconds"]
    ]
    ratio = round(statistics.median(pairs), 2) if len(pairs) == rounds else None
    return sides[0], sides[1], ratio


def fakefs(work: Path, iterations: int) -> Result:
    """Per-test cost of ``installperm_fakefs`` (build+run-free), in ms.

    Uses ``benchmarks/fakefs_overhead.py`` if its author provided one (it
    prints a JSON object whose ``overhead_ms`` is the median cost beyond a plain
    pyfakefs ``Patcher``, the ``fs`` fixture's own); otherwise times
    ``iterations`` generated tests that build ``installperm_fakefs.system()``
    against as many empty tests, from pytest's junit XML (setup+call+teardown
    per test), and subtracts the medians.
    """
    script = Path(__file__).with_name("fakefs_overhead.py")
    if script.exists():
        out = subprocess.run(
            [sys.executable, str(script), str(iterations)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        try:
            data = json.loads(out.stdout)
        except ValueError:
            return {
                "available": False,
                "reason": f"{script.name} exited {out.returncode} "
                f"without JSON: {out.stderr.strip()[-300:]}",
            }
        # Its ``overhead_ms``: our fixture's median minus pyfakefs's own Patcher.
        value = data.get("overhead_ms", data.get("fakefs_overhead_ms_median"))
        if not isinstance(value, (int, float)):
            return {"available": False, "reason": f"{script.name} printed no overhead_ms"}
        return {"available": True, "ms": value, "source": script.name, "raw": data}
    project = work / "fakefs"
    project.mkdir()
    try:
        (project / "test_fakefs_bench.py").write_text(
            "import pytest\n"
            f"@pytest.mark.parametrize('i', range({iterations}))\n"
            "def test_fakefs(installperm_fakefs, i):\n"
            "    assert installperm_fakefs.system() is not None\n"
            f"@pytest.mark.parametrize('i', range({iterations}))\n"
            "def test_empty(i):\n"
            "    assert i >= 0\n"
        )
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "--junitxml",
                str(project / "junit.xml"),
                "test_fakefs_bench.py",
            ],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if out.returncode != 0:
            tail = (out.stdout.strip().splitlines() or [""])[-1]
            if "fixture 'installperm_fakefs' not found" in out.stdout:
                return {
                    "available": False,
                    "reason": "fixture installperm_fakefs does not exist yet",
                }
            return {"available": False, "reason": f"pytest exited {out.returncode}: {tail}"}
        import xml.etree.ElementTree as ElementTree

        cases = ElementTree.parse(project / "junit.xml").getroot().iter("testcase")
        fake: list[float] = []
        empty: list[float] = []
        for case in cases:
            name = case.get("name", "")
            (fake if name.startswith("test_fakefs") else empty).append(float(case.get("time", 0)))
        return {
            "available": True,
            "ms": round(med(fake) - med(empty), 3),
            "source": "junit per-test times, fakefs minus empty",
        }
    finally:
        shutil.rmtree(project, ignore_errors=True)


def overhead_subprocess(
    argv_prefix: list[str], extra: list[str], tmpdir: Path, env_extra: dict[str, str] | None = None
) -> Result:
    """Run ``run.py --overhead-only`` in another process (another uid or tmpdir)."""
    argv = [
        *argv_prefix,
        sys.executable,
        str(Path(__file__).with_name("run.py")),
        "--overhead-only",
        *extra,
    ]
    env = {**os.environ, "TMPDIR": str(tmpdir), **(env_extra or {})}
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=600)
    for line in reversed(out.stdout.splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and "overhead" in data:
                return dict(data["overhead"])
    return {
        "available": False,
        "reason": f"subprocess exited {out.returncode}: {out.stderr.strip()[-400:]}",
    }
