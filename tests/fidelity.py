"""Fidelity scenarios: one scenario, observed on a real Debian system and
through the plugin's fixtures, reduced to what must agree.

An observation is plain data (JSON-able, so it can come back from a plugin run
inside a rootfs): the outcome, the key messages pip and uv printed, and every
file the run wrote, per role, relative to that role's directory. Paths differ
between the two sides (the real ``/usr/local/lib/python3.X/dist-packages``
against a sandbox's), so they are compared relative to their role.

This module is imported by tests/test_fidelity.py on the host and run as a
script inside a rootfs (``python fidelity.py SUITE WHEELS``) for the releases
whose interpreter needs its own libc.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Message kinds and the words that identify them in pip's and uv's output.
MESSAGES = {
    "fallback": r"Defaulting to user installation because normal site-packages is not writeable",
    "not-on-path": r"is installed in '[^']+' which is not on PATH",
    "installed": r"Successfully installed demo-1\.0|Installed 1 package",
    "errno-13": r"\[Errno 13\] Permission denied",
    "consider-user": r"Consider using the `--user` option",
    "check-permissions": r"^Check the permissions\.",
    "externally-managed": r"externally-managed-environment|externally managed",
    "user-site-disabled": r"User site-packages are disabled",
    "user-site-invisible": r"User site-packages are not visible in this virtualenv",
    "uv-denied": r"Permission denied \(os error 13\)",
    "uv-no-user": r"`--user` is unsupported",
}

#: Inside the rootfs: where a scenario's venv and ``--prefix`` go.
REAL_VENV = "/opt/venv"
REAL_PREFIX = "/home/tester/pfx"
REAL_HOMES = {"present": "/home/tester", "missing": "/home/missing", "unwritable": "/home/locked"}


@dataclass(frozen=True)
class Scenario:
    """``INSTALLER install ARGS demo.whl`` as the unprivileged user, one setting changed."""

    name: str
    installer: str = "pip"
    args: tuple[str, ...] = ()
    kind: str = "system"  # system, venv, venv-ssp
    home: str = "present"
    user_site: bool = True
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, python: str, wheel: str | Path, prefix: str) -> list[str | Path]:
        """The command; a Path ``wheel`` stays a Path (the plugin stages those)."""
        args = [prefix if a == "{prefix}" else a for a in self.args]
        if self.installer == "uv":
            system = [] if self.kind != "system" else ["--system"]
            return ["uv", "pip", "install", "--python", python, *system, *args, wheel]
        return [python, "-m", "pip", "install", *args, wheel]


SCENARIOS = (
    # The original report: a root-owned system site (PEP 668 waived, as in a
    # Dockerfile), pip falls back to the user site, uv is denied.
    Scenario("report-pip", args=("--break-system-packages",)),
    Scenario("report-uv", installer="uv", args=("--break-system-packages",)),
    Scenario("pep668"),
    Scenario("pep668-user", args=("--user",)),
    Scenario("pep668-uv", installer="uv"),
    Scenario("user-site-disabled", args=("--break-system-packages",), user_site=False),
    Scenario("home-missing", args=("--break-system-packages",), home="missing"),
    Scenario("home-unwritable", args=("--break-system-packages",), home="unwritable"),
    Scenario("prefix", args=("--prefix", "{prefix}")),
    Scenario("venv-locked", kind="venv"),
    Scenario("venv-locked-user", args=("--user",), kind="venv"),
    Scenario("venv-ssp-locked", kind="venv-ssp"),
)


def messages(output: str) -> list[str]:
    return sorted(k for k, pattern in MESSAGES.items() if re.search(pattern, output, re.M))


def classify(files: Iterable[str], anchors: Mapping[str, str], ignore: Iterable[str]) -> dict:
    """Files by the most specific anchor holding them; ``other`` for the rest."""
    ordered = sorted(anchors.items(), key=lambda item: -len(item[1]))
    skip = tuple(i.rstrip("/") + "/" for i in ignore)
    roles: dict[str, list[str]] = {}
    for path in files:
        if path.startswith(skip):
            continue
        for role, top in ordered:
            if path.startswith(top.rstrip("/") + "/"):
                roles.setdefault(role, []).append(os.path.relpath(path, top))
                break
        else:
            roles.setdefault("other", []).append(path)
    return {role: sorted(paths) for role, paths in sorted(roles.items())}


def observation(returncode: int, output: str, files: dict[str, list[str]]) -> dict[str, Any]:
    if returncode != 0:
        outcome = "error"
    else:
        landed = [r for r, paths in files.items() if "demo/__init__.py" in map(_tail, paths)]
        outcome = landed[0] if len(landed) == 1 else f"unclear: {landed}"
    return {"outcome": outcome, "messages": messages(output), "files": files}


def _tail(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[-2:])


# -- the plugin's side ----------------------------------------------------------


def observe_plugin(
    factory: Any,
    scenario: Scenario,
    python: str | None,
    wheel: Path,
    pip_wheel: Path | None,
    **options: Any,
) -> dict[str, Any]:
    """The scenario through the fixtures; a skip is an observation too.

    ``options`` go to ``system()``/``venv()`` as they are (e.g. ``path``)."""
    import pytest

    preinstalled = [pip_wheel] if pip_wheel is not None else []
    try:
        if scenario.kind == "system":
            env = factory.system(
                python=python,
                home=scenario.home,
                user_site=scenario.user_site,
                preinstalled=preinstalled,
                **options,
            )
        else:
            env = factory.venv(
                python=python,
                system_site_packages=scenario.kind == "venv-ssp",
                home=scenario.home,
                user_site=scenario.user_site,
                preinstalled=preinstalled,
                **options,
            )
    except pytest.skip.Exception as exc:
        return {"outcome": f"skipped: {exc}", "messages": [], "files": {}}
    prefix = env.home / "pfx"
    argv = scenario.argv(str(env.python), wheel, str(prefix))
    if scenario.installer == "uv":
        argv[0] = str(env.tool("uv"))
    result = env.run(argv, env=dict(scenario.env))
    anchors = {
        "system-site": str(env.paths("system")["purelib"]),
        "system-scripts": str(env.paths("system")["scripts"]),
        "user": str(env.userbase),
        "prefix": str(prefix),
    }
    if scenario.kind != "system":
        anchors = {"venv": str(env.prefix), "user": str(env.userbase), "prefix": str(prefix)}
    written = [
        str(p)
        for p in result.changes.created | result.changes.modified
        if not stat.S_ISDIR(os.lstat(p).st_mode)
    ]
    ignore = [str(env.roles[r]) for r in ("cache", "tmp", "stage")]
    files = classify(written, anchors, ignore)
    return observation(result.returncode, result.stdout + result.stderr, files)


# -- the real system's side -----------------------------------------------------


def real_setup(scenario: Scenario, pip_wheel: str) -> str:
    """Shell run as root before the scenario: what the real system has already."""
    steps = []
    if scenario.kind != "system":
        ssp = " --system-site-packages" if scenario.kind == "venv-ssp" else ""
        steps.append(f"python3 -m venv --without-pip{ssp} {REAL_VENV}")
        steps.append(
            f"python3 -m pip --python {REAL_VENV}/bin/python install --quiet --no-index "
            f"--no-warn-script-location {pip_wheel}"
        )
    if scenario.home == "unwritable":
        steps.append(f"mkdir -m 0755 {REAL_HOMES['unwritable']}")
    return " && ".join(steps) or "true"


def real_anchors(python: str, kind: str) -> dict[str, str]:
    if kind != "system":
        return {"venv": REAL_VENV, "user": "/home/tester/.local", "prefix": REAL_PREFIX}
    return {
        "system-site": f"/usr/local/lib/python{python}/dist-packages",
        "system-scripts": "/usr/local/bin",
        "user": "/home/tester/.local",
        "prefix": REAL_PREFIX,
    }


def _plugin_main(suite: str, wheels: str) -> None:
    """Inside a rootfs: every scenario through the fixtures, as JSON on stdout."""
    from pytest_installperm.environment import InstallPerm
    from pytest_installperm.session import Session

    session = Session()
    factory = InstallPerm(session)
    found = {}
    try:
        for scenario in SCENARIOS:
            found[scenario.name] = observe_plugin(
                factory, scenario, None, Path(wheels, "demo-1.0-py3-none-any.whl"), None
            )
            factory.close()
    finally:
        factory.close()
        session.close()
    json.dump({"suite": suite, "python": sys.version.split()[0], "results": found}, sys.stdout)


if __name__ == "__main__":
    _plugin_main(sys.argv[1], sys.argv[2])
