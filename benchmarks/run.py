"""pytest-installperm benchmark: what the plugin costs beside the installer it tests.

    .venv/bin/python benchmarks/run.py            # full run, a few minutes
    .venv/bin/python benchmarks/run.py --quick    # seconds; checks the plumbing only

Everything is measured in one run, so the ratios compare like with like on a
machine whose speed drifts. It prints a table, then one JSON line (the last
line of stdout) whose fields docs/performance.md explains. It writes into one
temporary directory and the engine's session roots, all removed at the end;
``--basetemp DIR`` puts both below DIR, so a caller can check that nothing is
left there, whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import containment
import measure
import startup
from sitegen import small_wheel

NOBODY = 65534
#: field: (comparison, limit); "matrix_xdist2_s" and the cold setup compare with
#: other fields of the same run (see goals()).
GOALS = {
    "overhead_ms_median": ("<=", 2.0),
    "ratio_venv_over_overhead": (">=", 40.0),
    "session_setup_warm_ms": ("<=", 200.0),
    "import_overhead_ms": ("<=", 60.0),
    "detect_ms_50k": ("<=", 20.0),
    "matrix_s": ("<=", 60.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few iterations, small trees, no matrix: for the smoke test",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=50,
        help="timed system() scenarios per backend (default 50, at least 30)",
    )
    parser.add_argument("--uv", type=int, default=20, help="uv installs (default 20)")
    parser.add_argument("--pip", type=int, default=10, help="pip installs (default 10)")
    parser.add_argument("--venv", type=int, default=20, help="python -m venv runs (default 20)")
    parser.add_argument("--virtualenv", type=int, default=10, help="virtualenv runs (default 10)")
    parser.add_argument(
        "--detect-rounds",
        type=int,
        default=5,
        help="installs per site size in the detection benchmark (default 5)",
    )
    parser.add_argument("--no-matrix", action="store_true", help="skip the matrix runs")
    parser.add_argument(
        "--matrix-rounds",
        type=int,
        default=3,
        metavar="N",
        help="pairs of matrix runs, serial then -n 2, alternated; medians are reported (3)",
    )
    parser.add_argument(
        "--basetemp",
        default=None,
        metavar="DIR",
        help="an existing directory for the work directory and every session root "
        "(default: TMPDIR, and the engine's choice for session roots)",
    )
    parser.add_argument("--overhead-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--python", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.uv, args.pip, args.venv, args.virtualenv = 5, 2, 1, 2, 1
        args.detect_rounds = 2
    args.warmup = 0 if args.quick else 1
    return args


def machine(tmp: str) -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "euid": os.geteuid(),
        "tmpdir": tmp,
        "tmpdir_fs": measure.fs_type(tmp),
        "loadavg_start": load_average(),
    }


def load_average() -> float | None:
    """The 1-minute load average: above the core count, figures are inflated."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def other_backends(work: Path, iterations: int, basetemp: str | None) -> dict[str, dict[str, Any]]:
    """Backends this process cannot use directly, each measured where it can be."""
    results: dict[str, dict[str, Any]] = {}
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            results["chmod"] = {
                "available": False,
                "reason": "root cannot be denied by mode bits, and setpriv "
                "(to run this part as uid 65534) is missing",
            }
        else:
            # chmod needs a uid without CAP_DAC_OVERRIDE: uid 65534. This
            # process keeps CAP_DAC_READ_SEARCH (read, never write) only so it can
            # start under /root (0700); the sandboxes' base is a world-readable
            # interpreter, because access(2) ignores that capability.
            tmp = work / "chmod-tmp"
            tmp.mkdir()
            os.chown(tmp, NOBODY, NOBODY)
            python = chmod_base()
            extra = ["--backend", "chmod", "--iterations", str(iterations)]
            if basetemp is not None:  # its session roots too: in its own TMPDIR
                extra += ["--basetemp", str(tmp)]
            if python:
                extra += ["--python", python]
            results["chmod"] = measure.overhead_subprocess(
                [
                    setpriv,
                    f"--reuid={NOBODY}",
                    f"--regid={NOBODY}",
                    "--clear-groups",
                    "--inh-caps=+dac_read_search",
                    "--ambient-caps=+dac_read_search",
                ],
                extra,
                tmp,
                {"HOME": str(tmp)},
            )
            if results["chmod"].get("available"):
                results["chmod"]["note"] = (
                    f"as uid {NOBODY} (CAP_DAC_READ_SEARCH only), "
                    f"base {python or 'the running interpreter'}"
                )
    else:
        results["privdrop"] = {
            "available": False,
            "reason": f"needs root to run children as another uid; this "
            f"benchmark runs as uid {os.geteuid()}",
        }
    return results


def chmod_base() -> str | None:
    """A base interpreter that uid 65534 can run and access(2) (None: the running one)."""
    base = measure.base_python()
    if base.startswith("/root/"):
        for candidate in (
            f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}",
            "/usr/bin/python3",
        ):
            if os.path.exists(candidate):
                return candidate
    return None


def progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace, work: Path, base_tmp: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": 2,
        "quick": args.quick,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(base_tmp),
    }

    progress("overhead of system() scenarios")
    main = measure.overhead(None, args.iterations, basetemp=args.basetemp)
    by_backend = {main.get("backend", "auto"): main}
    if not args.quick:
        progress("overhead with the other backends")
        by_backend.update(other_backends(work, args.iterations, args.basetemp))
        for name in ("mountns",):
            if name not in by_backend:
                by_backend[name] = measure.overhead(name, args.iterations, basetemp=args.basetemp)
    progress("breakdown (instrumented pass)")
    split = measure.breakdown(None, max(10, args.iterations // 2), args.basetemp)
    data["overhead_backend"] = main.get("backend")
    data["overhead_ms_median"] = main["total"]["median"] if main.get("available") else None
    data["overhead_ms_median_by_backend"] = {
        k: (v["total"]["median"] if v.get("available") else None) for k, v in by_backend.items()
    }
    data["overhead_unavailable"] = {
        k: v.get("reason") for k, v in by_backend.items() if not v.get("available")
    }
    data["overhead_detail"] = by_backend
    data["overhead_breakdown_ms_median"] = split.get("phases_ms_median")

    data["fs_create_us"] = {base_tmp: measure.fs_create_cost(str(work))}
    by_fs: dict[str, Any] = {}
    if main.get("available"):
        root_fs = main["session_root_fs"]
        by_fs[f"{root_fs} ({os.path.dirname(main['session_root'])}, engine's choice)"] = data[
            "overhead_ms_median"
        ]
        if root_fs != data["machine"]["tmpdir_fs"] and not args.quick:
            data["fs_create_us"][os.path.dirname(main["session_root"])] = measure.fs_create_cost(
                os.path.dirname(main["session_root"])
            )
            progress(f"overhead with the session root in {base_tmp}")
            disk = measure.overhead(None, args.iterations, basetemp=str(work))
            by_fs[f"{data['machine']['tmpdir_fs']} ({base_tmp})"] = (
                disk["total"]["median"] if disk.get("available") else None
            )
    data["overhead_ms_median_by_fs"] = by_fs

    progress("session setup: cold, warm and uncached template cache")
    setup = startup.session_setup(
        work, 1 if args.quick else 3, 2 if args.quick else 7, args.basetemp
    )
    data["session_setup_detail"] = setup
    data["session_setup_cold_ms"] = setup.get("cold_ms_median")
    data["session_setup_warm_ms"] = setup.get("warm_ms_median")
    data["session_setup_uncached_ms"] = setup.get("uncached_ms_median")

    progress("plugin import over pytest's own")
    imports = startup.import_overhead(3 if args.quick else 21)
    data["import_detail"] = imports
    data["import_overhead_ms"] = imports.get("overhead_ms")
    progress("a pytest run of one empty test, with and without the plugin")
    sessions = startup.session_overhead(work, 3 if args.quick else 15)
    data["session_overhead_detail"] = sessions
    data["session_overhead_ms"] = sessions.get("overhead_ms")

    progress("python -m venv --without-pip, virtualenv")
    venv = measure.create_venvs(measure.venv_argv, work, args.venv, args.warmup)
    virtualenv = measure.create_venvs(measure.virtualenv_argv, work, args.virtualenv, args.warmup)
    data["venv_ms_median"] = venv.get("median")
    data["virtualenv_ms_median"] = virtualenv.get("median")

    progress("uv and pip installs of one small wheel")
    wheel = small_wheel(work, "benchsmall")
    uv = measure.installs("uv", wheel, args.uv, args.warmup, args.basetemp)
    pip = measure.installs("pip", wheel, args.pip, args.warmup, args.basetemp)
    data["uv_install_ms_median"] = uv["installer"]["median"] if uv.get("available") else None
    data["pip_install_ms_median"] = pip["installer"]["median"] if pip.get("available") else None
    data["install_detail"] = {"uv": uv, "pip": pip}

    sizes = {"1k": 1000, "10k": 10000, "50k": 50000}
    if args.quick:
        sizes = {"1k": 100, "10k": 200, "50k": 500}
    detect: dict[str, Any] = {}
    for label, n in sizes.items():
        progress(f"change detection, site of {n} files")
        detect[label] = measure.detection(n, args.detect_rounds, work, args.basetemp)
        data[f"detect_ms_{label}"] = detect[label].get("detect_ms_median")
        data[f"snapshot_ms_{label}"] = detect[label].get("snapshot_ms_median")
    data["detect_detail"] = detect

    if args.quick or args.no_matrix:
        why = "skipped: --quick" if args.quick else "skipped: --no-matrix"
        serial = parallel = {"available": False, "reason": why}
        paired = None
        fake = {"available": False, "reason": why}
    else:
        if "--installperm-installer" not in measure.plugin_options(work):
            paired = None
            serial = parallel = {
                "available": False,
                "reason": "pytest has no --installperm-installer option yet "
                "(the built-in matrix is not implemented)",
            }
        else:
            serial, parallel, paired = measure.matrix_rounds(
                work, max(args.matrix_rounds, 1), progress, basetemp=args.basetemp
            )
        progress("installperm_fakefs")
        fake = measure.fakefs(work, 30)
    data["matrix_s"] = serial.get("seconds")
    data["matrix_xdist2_s"] = parallel.get("seconds")
    data["matrix_detail"] = {"serial": serial, "xdist2": parallel}
    data["matrix_speedup_paired"] = paired
    data["fakefs_overhead_ms_median"] = fake.get("ms")
    data["fakefs_detail"] = fake

    over = data["overhead_ms_median"]
    data["ratio_venv_over_overhead"] = _ratio(data["venv_ms_median"], over)
    data["ratio_virtualenv_over_overhead"] = _ratio(data["virtualenv_ms_median"], over)
    data["ratio_overhead_over_uv_install"] = _ratio(over, data["uv_install_ms_median"])
    data["goals"] = goals(data)
    data["machine"]["loadavg_end"] = load_average()
    return data


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def goals(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, (op, limit) in GOALS.items():
        value = data.get(name)
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        result[f"{name} {op} {limit:g}"] = met
    serial, parallel = data.get("matrix_s"), data.get("matrix_xdist2_s")
    result["matrix_xdist2_s <= matrix_s / 1.7"] = (
        None if serial is None or parallel is None else parallel <= serial / 1.7
    )
    # The same goal judged pair by pair (see measure.matrix_rounds): both are shown.
    result["matrix_speedup_paired >= 1.7"] = (
        None if data.get("matrix_speedup_paired") is None else data["matrix_speedup_paired"] >= 1.7
    )
    cold, uncached = data.get("session_setup_cold_ms"), data.get("session_setup_uncached_ms")
    result["session_setup_cold_ms <= session_setup_uncached_ms"] = (
        None if cold is None or uncached is None else cold <= uncached
    )
    return result


def table(data: dict[str, Any]) -> str:
    m = data["machine"]

    def fmt(value: Any, unit: str = "ms") -> str:
        return "n/a" if value is None else f"{value:,.2f} {unit}"

    rows: list[tuple[str, str]] = [
        (
            f"machine: {m['cpus']} x {m['cpu_model']}, kernel {m['kernel']}, Python "
            f"{m['python']}, euid {m['euid']}, tmp {m['tmpdir']} ({m['tmpdir_fs']})",
            "",
        ),
        (
            f"load average: {m['loadavg_start']} at start, {m['loadavg_end']} at end"
            + (
                "  (BUSY MACHINE: figures are inflated)"
                if max(m["loadavg_start"] or 0, m["loadavg_end"] or 0) > (m["cpus"] or 1) / 2
                else ""
            ),
            "",
        ),
        ("", ""),
        (
            f"overhead of one system() scenario [{data['overhead_backend']}]",
            fmt(data["overhead_ms_median"]),
        ),
    ]
    for name, value in data["overhead_ms_median_by_backend"].items():
        reason = data["overhead_unavailable"].get(name)
        rows.append(
            (f"  backend {name}", fmt(value) if reason is None else f"not measured: {reason[:90]}")
        )
    main = data["overhead_detail"].get(data["overhead_backend"], {})
    if main.get("available"):
        rows += [
            ("  build + lock + snapshot (system())", fmt(main["build_lock_snapshot_ms_median"])),
            ("  diff (Snapshot.update, no change)", fmt(main["diff_ms_median"])),
            ("  teardown (close())", fmt(main["teardown_ms_median"])),
            ("  one-time session setup (first system())", fmt(main["session_setup_ms"])),
            (
                "  inodes per sandbox",
                ", ".join(f"{v} {k}" for k, v in main["sandbox_entries"].items()),
            ),
        ]
    for label, value in (data["overhead_breakdown_ms_median"] or {}).items():
        if value is not None:
            rows.append((f"    in {label}", fmt(value)))
    rows += [
        ("session setup, cold cache (first system())", fmt(data["session_setup_cold_ms"])),
        ("session setup, warm cache", fmt(data["session_setup_warm_ms"])),
        ("session setup, no cache", fmt(data["session_setup_uncached_ms"])),
        ("plugin import over pytest's own", fmt(data["import_overhead_ms"])),
        (
            "pytest run of an empty test, plugin over -p no:installperm",
            fmt(data["session_overhead_ms"]),
        ),
        (
            "  pyfakefs's own pytest plugin (a dependency) in that run",
            fmt(data["session_overhead_detail"].get("fakefs_plugin_ms")),
        ),
        ("containment per run (`true`)", fmt(data["containment_ms_median"])),
    ]
    for where, value in data["overhead_ms_median_by_fs"].items():
        rows.append((f"  session root on {where}", fmt(value)))
    for where, cost in data["fs_create_us"].items():
        rows.append(
            (f"  create cost on {where}", ", ".join(f"{k[:-3]} {v:g} us" for k, v in cost.items()))
        )
    rows += [
        ("", ""),
        ("python -m venv --without-pip", fmt(data["venv_ms_median"])),
        ("virtualenv", fmt(data["virtualenv_ms_median"])),
        ("uv pip install, one small wheel", fmt(data["uv_install_ms_median"])),
        ("pip install, one small wheel", fmt(data["pip_install_ms_median"])),
        ("", ""),
    ]
    for label in ("1k", "10k", "50k"):
        detail = data["detect_detail"][label]
        size = f"{detail.get('files', '?')} files"
        rows.append((f"detect after uv install, site of {size}", fmt(data[f"detect_ms_{label}"])))
        rows.append(("  one-time Snapshot.take of that sandbox", fmt(data[f"snapshot_ms_{label}"])))
    for key, label in (("serial", "matrix_s"), ("xdist2", "matrix_xdist2_s")):
        detail = data["matrix_detail"][key]
        rows.append(
            (
                f"matrix pip+uv {'-n 2' if key == 'xdist2' else 'serial'}",
                fmt(data[label], "s")
                if detail.get("available")
                else f"n/a ({detail.get('reason')})",
            )
        )
        if detail.get("available"):
            rows.append(("  sum of per-item durations", fmt(detail.get("items_s"), "s")))
            rounds = ", ".join(f"{s:g}" for s in detail.get("rounds_s", []))
            rows.append(("  every round (s), the median shown above", rounds))
            cpu = ", ".join(f"{s:g}" for s in detail.get("rounds_cpu_s", []))
            rows.append(("  CPU of every round (s), all processes", cpu))
    if data.get("matrix_speedup_paired") is not None:
        rows.append(
            ("matrix speed-up, median of the pairs", fmt(data["matrix_speedup_paired"], "x"))
        )
    fake = data["fakefs_detail"]
    rows.append(
        (
            "installperm_fakefs overhead",
            fmt(data["fakefs_overhead_ms_median"])
            if fake.get("available")
            else f"n/a ({fake.get('reason')})",
        )
    )
    rows += [
        ("", ""),
        ("ratio venv / overhead", fmt(data["ratio_venv_over_overhead"], "x")),
        ("ratio virtualenv / overhead", fmt(data["ratio_virtualenv_over_overhead"], "x")),
        ("ratio overhead / uv install", fmt(data["ratio_overhead_over_uv_install"], "x")),
        ("", ""),
    ]
    for goal, met in data["goals"].items():
        rows.append((f"goal {goal}", {True: "met", False: "MISSED", None: "not measured"}[met]))
    width = max(len(k) for k, v in rows if v)
    return "\n".join(f"{k:<{width}}  {v}" if v else k for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.overhead_only:
        result = measure.overhead(
            args.backend, args.iterations, basetemp=args.basetemp, python=args.python
        )
        print(json.dumps({"overhead": result}, sort_keys=True))
        return 0
    if args.iterations < 30 and not args.quick:
        print("--iterations must be at least 30 (medians of fewer are noise)", file=sys.stderr)
        return 2
    if args.basetemp is not None and not os.path.isdir(args.basetemp):
        print(f"--basetemp {args.basetemp}: is not an existing directory", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="installperm-bench-", dir=args.basetemp))
    previous = tempfile.tempdir
    base_tmp = args.basetemp or tempfile.gettempdir()
    try:
        # 0711: a dropped uid must traverse to the session root inside.
        os.chmod(work, 0o711)
        tempfile.tempdir = str(work)
        data = run_all(args, work, base_tmp)
        data["containment_ms_median"] = containment.extra_ms_median(
            10 if args.quick else 100, args.basetemp
        )
        data["workdir"] = str(work)
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(work, ignore_errors=True)
    print(table(data))
    print(json.dumps(data, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
