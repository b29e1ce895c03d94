"""The benchmark runs, prints one JSON line with every field, and cleans up.

This checks the benchmark's plumbing, never its figures: no value is compared
with a limit here (speed belongs in benchmarks/, not in assertions). The
``--quick`` mode uses a few iterations and small trees and skips the matrix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_installperm.sandbox import default_parent

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
NUMBER = (int, float)

#: Fields a --quick run must fill with a number.
MEASURED = (
    "overhead_ms_median",
    "containment_ms_median",
    "venv_ms_median",
    "virtualenv_ms_median",
    "uv_install_ms_median",
    "pip_install_ms_median",
    "detect_ms_1k",
    "detect_ms_10k",
    "detect_ms_50k",
    "snapshot_ms_1k",
    "snapshot_ms_10k",
    "snapshot_ms_50k",
    "ratio_venv_over_overhead",
    "session_setup_cold_ms",
    "session_setup_warm_ms",
    "session_setup_uncached_ms",
    "import_overhead_ms",
    "session_overhead_ms",
    "containment_ms_median",
)
#: Fields that are a number, or null with a reason in their ``*_detail``.
OPTIONAL = {
    "matrix_s": ("matrix_detail", "serial"),
    "matrix_xdist2_s": ("matrix_detail", "xdist2"),
    "fakefs_overhead_ms_median": ("fakefs_detail", None),
}


def test_quick_benchmark_prints_every_field() -> None:
    # A directory of this run's own, where the engine would put session roots
    # (a tmpfs if there is one): other sessions on this machine cannot add to
    # it, so "empty afterwards" means this benchmark left nothing behind.
    private = tempfile.mkdtemp(prefix="bench-smoke-", dir=default_parent())
    try:
        os.chmod(private, 0o711)  # a dropped uid must reach the sessions inside
        out = subprocess.run(
            [sys.executable, str(BENCHMARK), "--quick", "--basetemp", private],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        left = sorted(os.listdir(private))
    finally:
        shutil.rmtree(private, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])

    for name in MEASURED:
        assert isinstance(data[name], NUMBER) and not isinstance(data[name], bool), (
            name,
            data[name],
            data.get("install_detail"),
            data.get("detect_detail"),
        )
    assert isinstance(data["overhead_backend"], str)
    by_backend = data["overhead_ms_median_by_backend"]
    assert isinstance(by_backend[data["overhead_backend"]], NUMBER)
    for backend, value in by_backend.items():
        # A backend without a figure must say why it could not be measured.
        assert (value is None and isinstance(data["overhead_unavailable"][backend], str)) or (
            isinstance(value, NUMBER)
        ), (backend, value)
    for name, (detail, key) in OPTIONAL.items():
        value = data[name]
        reason = data[detail][key] if key else data[detail]
        assert isinstance(value, NUMBER) or (value is None and isinstance(reason["reason"], str))
    assert all(v in (True, False, None) for v in data["goals"].values())
    assert os.path.dirname(data["workdir"]) == private
    assert all(
        os.path.dirname(detail["session_root"]) == private
        for detail in data["overhead_detail"].values()
        if detail.get("available")
    ), data["overhead_detail"]
    assert left == [], f"the benchmark left {left} behind in {private}"
