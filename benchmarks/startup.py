"""What a session pays before its first scenario, and what importing the plugin costs.

* ``session_setup``: the first ``system()`` of a fresh ``Session`` (backend,
  interpreter layout, templates, pip and tools, scheme probe), against an empty
  template cache (cold), the same cache again (warm), and with no cache at all
  (every session builds its own templates in its session root, as before the
  cache existed), all in one run.
* ``import_overhead``: ``python -c "import pytest"`` against ``python -c
  "import pytest, pytest_installperm.plugin"``, interleaved, medians.
* ``session_overhead``: a whole pytest run of one empty test, with the plugin
  and with ``-p no:installperm``, interleaved, medians: the import plus the
  hooks (options checked, markers added), what a project that has the plugin
  installed pays per run when it uses no fixture. pyfakefs, a dependency, is
  a pytest plugin of its own; its price is reported beside ours.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_installperm.environment import InstallPerm
from pytest_installperm.session import Session

Result = dict[str, Any]


def first_system(
    cache_dir: Path | None, *, use_cache: bool = True, basetemp: str | None = None
) -> float:
    """Seconds for the first ``system()`` of a new session; the session is removed."""
    session = Session(cache_dir=cache_dir, use_cache=use_cache, basetemp=basetemp)
    factory = InstallPerm(session)
    try:
        start = time.perf_counter()
        factory.system()
        return time.perf_counter() - start
    finally:
        factory.close()
        session.close()


def session_setup(
    work: Path, cold_runs: int, warm_runs: int, basetemp: str | None = None
) -> Result:
    """Cold, warm and uncached session setup in ms (medians), side by side."""
    cold: list[float] = []
    warm: list[float] = []
    uncached: list[float] = []
    try:
        for i in range(cold_runs):
            # A fresh cache each time; the parent is 0711 so a dropped uid reaches it.
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work)) / "templates"
            cache.parent.chmod(0o711)
            cold.append(first_system(cache, basetemp=basetemp))
            uncached.append(first_system(None, use_cache=False, basetemp=basetemp))
            for _ in range(warm_runs if i == 0 else 0):
                warm.append(first_system(cache, basetemp=basetemp))
            shutil.rmtree(cache.parent, ignore_errors=True)
    except pytest.skip.Exception as exc:
        return {"available": False, "reason": str(getattr(exc, "msg", exc))}
    return {
        "available": True,
        "cold_ms_median": _median_ms(cold),
        "warm_ms_median": _median_ms(warm),
        "uncached_ms_median": _median_ms(uncached),
        "cold_ms": [round(v * 1000, 1) for v in cold],
        "warm_ms": [round(v * 1000, 1) for v in warm],
        "uncached_ms": [round(v * 1000, 1) for v in uncached],
    }


def _median_ms(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    value = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return round(value * 1000, 2)


def _children_cpu() -> float:
    """CPU seconds (user and system) of every child waited for so far: unlike
    wall time, preemption by other processes does not inflate it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_overhead(runs: int) -> Result:
    """Median ms of importing the plugin's hooks beyond pytest's own import."""
    programs = {
        "pytest": "import pytest",
        "plugin": "import pytest, pytest_installperm.plugin",
    }
    times: dict[str, list[float]] = {name: [] for name in programs}
    cpu: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(runs + 1):
        for name, code in programs.items():
            before = _children_cpu()
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_children_cpu() - before)
            if out.returncode != 0:
                return {"available": False, "reason": out.stderr.decode()[-300:]}
    # The first run of each only warms the page cache.
    plain = statistics.median(times["pytest"][1:]) * 1000
    plugin = statistics.median(times["plugin"][1:]) * 1000
    plain_cpu = statistics.median(cpu["pytest"][1:]) * 1000
    plugin_cpu = statistics.median(cpu["plugin"][1:]) * 1000
    return {
        "available": True,
        "pytest_ms_median": round(plain, 2),
        "plugin_ms_median": round(plugin, 2),
        "overhead_ms": round(plugin - plain, 2),
        "overhead_cpu_ms": round(plugin_cpu - plain_cpu, 2),
        "runs": runs,
    }


#: pytest runs of one empty test: name -> the plugins turned off.
SESSIONS = {
    "bare": ("-p", "no:installperm", "-p", "no:fakefs"),
    "fakefs": ("-p", "no:installperm"),
    "plugin": (),
}


def session_overhead(work: Path, runs: int) -> Result:
    """Median wall and CPU ms of a pytest run with the plugin over one without."""
    project = Path(tempfile.mkdtemp(prefix="empty-", dir=work))
    (project / "test_empty.py").write_text("def test_empty():\n    assert len('ab') == 2\n")
    wall: dict[str, list[float]] = {name: [] for name in SESSIONS}
    cpu: dict[str, list[float]] = {name: [] for name in SESSIONS}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    try:
        for _ in range(runs + 1):
            for name, off in SESSIONS.items():
                before = _children_cpu()
                start = time.perf_counter()
                out = subprocess.run(
                    [*argv, *off], cwd=project, capture_output=True, check=False, timeout=120
                )
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(_children_cpu() - before)
                if out.returncode != 0:
                    return {"available": False, "reason": out.stdout.decode()[-300:]}
    finally:
        shutil.rmtree(project, ignore_errors=True)
    # The first run of each only warms the page cache.
    med = {name: statistics.median(v[1:]) * 1000 for name, v in wall.items()}
    med_cpu = {name: statistics.median(v[1:]) * 1000 for name, v in cpu.items()}
    return {
        "available": True,
        "wall_ms_median": {k: round(v, 2) for k, v in med.items()},
        "cpu_ms_median": {k: round(v, 2) for k, v in med_cpu.items()},
        "overhead_ms": round(med["plugin"] - med["fakefs"], 2),
        "overhead_cpu_ms": round(med_cpu["plugin"] - med_cpu["fakefs"], 2),
        "fakefs_plugin_ms": round(med["fakefs"] - med["bare"], 2),
        "runs": runs,
    }
