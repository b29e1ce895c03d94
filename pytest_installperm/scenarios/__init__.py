"""Scenario files: what to build, what to ask an installer, what should happen.

A scenario is TOML data, so an installer's repository can add its own without
writing Python (see ``docs/scenarios.md`` for the format). This module reads and
validates them; it never runs anything. A malformed file raises
:class:`~pytest_installperm.errors.ScenarioError` naming the file, the key and
the rule, because a scenario that silently means something else would make every
verdict built on it worthless.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pytest_installperm.errors import ScenarioError
from pytest_installperm.locks import HOME_STATES, LOCK_MODES, LOCK_ROLES

#: Where an install can land, or "error" when the installer refused or failed.
OUTCOMES = ("system", "user", "prefix", "target", "error")
#: Invariants an installer may be declared to break (see matrix/verdict.py).
INVARIANTS = ("outside", "residue", "one-scheme")
#: pip's messages, as kinds; the oracle predicts one per scenario.
MESSAGES = (
    "none",
    "fallback",
    "externally-managed",
    "user-with-target",
    "user-with-prefix",
    "user-in-venv",
    "user-site-disabled",
    "oserror-consider-user",
    "oserror-check-permissions",
    "oserror-no-hint",
)
KINDS = ("system", "venv")
USER_VIA = ("flag", "env")
BUILTIN_DIR = Path(__file__).parent

_TOP = {
    "name",
    "description",
    "references",
    "environment",
    "wheel",
    "request",
    "expect",
    "installer",
}
_ENVIRONMENT = {
    "kind",
    "locked",
    "home",
    "user_site",
    "externally_managed",
    "system_site_packages",
    "preinstalled",
    "lock_mode",
}
_WHEEL = {"name", "version", "console_scripts"}
_REQUEST = {"user", "user_via", "prefix", "target", "root", "break_system_packages", "upgrade"}
_EXPECT = {"outcome", "message"}
_INSTALLER = {"outcome", "diverges", "breaks"}
_DIVERGES = {"outcome", "reason"}


@dataclass(frozen=True)
class EnvironmentSpec:
    """The environment a scenario builds, in the fixture's own terms."""

    kind: str = "system"
    locked: tuple[str, ...] = ("system",)
    home: str = "present"
    user_site: bool = True
    externally_managed: bool = False
    system_site_packages: bool = False
    #: Older versions of the scenario's wheel installed as root before the lock.
    preinstalled: tuple[str, ...] = ()
    lock_mode: str = "deny"


@dataclass(frozen=True)
class WheelSpec:
    """The wheel to install: one pure module, and a console script by default."""

    name: str = "demo"
    version: str = "1.0"
    console_scripts: bool = True


@dataclass(frozen=True)
class Request:
    """What is asked of the installer, independent of any installer's syntax.

    ``user`` is True for ``--user`` (or ``PIP_USER=1`` with ``user_via="env"``),
    False for ``--no-user`` and None for neither. The directory options take
    sandbox directories that the matrix chooses, so scenarios stay portable.
    """

    user: bool | None = None
    user_via: str = "flag"
    prefix: bool = False
    target: bool = False
    root: bool = False
    break_system_packages: bool = False
    upgrade: bool = False

    def describe(self) -> str:
        parts = []
        if self.user is not None:
            flag = "--user" if self.user else "--no-user"
            parts.append(flag if self.user_via == "flag" else f"PIP_USER={int(self.user)}")
        for name in ("prefix", "target", "root", "break_system_packages", "upgrade"):
            if getattr(self, name):
                parts.append("--" + name.replace("_", "-"))
        return " ".join(parts) or "(no options)"


@dataclass(frozen=True)
class InstallerExpectation:
    """What one installer should do where it differs from pip, by design or by bug.

    ``outcome``: its own expected outcome (matching it passes).
    ``diverges``: (outcome or None for any, reason): an accepted divergence, an xfail.
    ``breaks``: invariant name -> reason: a known invariant break, an xfail.
    """

    outcome: str | None = None
    diverges: tuple[str | None, str] | None = None
    breaks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Scenario:
    """One validated scenario file."""

    name: str
    description: str
    path: Path
    environment: EnvironmentSpec
    wheel: WheelSpec
    request: Request
    #: pip's outcome and message kind as the file states them; None: the oracle's.
    outcome: str | None = None
    message: str | None = None
    references: tuple[str, ...] = ()
    installers: Mapping[str, InstallerExpectation] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def preinstalled(self) -> list[tuple[str, str]]:
        """(name, version) of each wheel to install before the lock."""
        found: list[tuple[str, str]] = []
        for spec in self.environment.preinstalled:
            req = Requirement(spec)
            version = next(iter(req.specifier)).version
            found.append((canonicalize_name(req.name), version))
        return found


class _Reader:
    """Typed access to one table of one file; every error names file and key."""

    def __init__(self, path: Path, table: Mapping[str, Any], where: str, known: set[str]) -> None:
        self.path = path
        self.table = table
        self.where = where
        unknown = sorted(set(table) - known)
        if unknown:
            self.fail(
                unknown[0], f"is not a known key here; known keys: {', '.join(sorted(known))}"
            )

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, rule: str) -> NoReturn:
        raise ScenarioError(f"{self.path}: key {self.key(name)!r} {rule}")

    def get(self, name: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        if name not in self.table:
            if required:
                self.fail(name, "is required")
            return default
        value = self.table[name]
        if (kind is bool and not isinstance(value, bool)) or (
            kind is not bool and (not isinstance(value, kind) or isinstance(value, bool))
        ):
            self.fail(name, f"must be a {kind.__name__}, got {value!r}")
        return value

    def choice(
        self,
        name: str,
        choices: Iterable[str],
        default: str | None = None,
        *,
        required: bool = False,
    ) -> Any:
        value = self.get(name, str, default, required=required)
        options = tuple(choices)
        if value is not None and value not in options:
            self.fail(name, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(name, list, None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            self.fail(name, f"must be a list of strings, got {value!r}")
        return tuple(value)

    def table_of(self, name: str, known: set[str]) -> _Reader:
        value = self.get(name, dict, {})
        return _Reader(self.path, value, self.key(name), known)


#: Scenario files are a few hundred bytes; anything this big is not one.
MAX_BYTES = 1 << 20
#: Tables and arrays nest at most this deep in a scenario (the schema needs 3).
MAX_DEPTH = 8


def _read(path: Path, directory: Path) -> bytes:
    """The bytes of ``path``, a regular file whose real location is inside
    ``directory``: a symlink out of the scenario directory is refused unread,
    and nothing that is not a regular file (a fifo, a device) is opened to block."""
    real_dir = os.path.realpath(directory)
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_dir]) != real_dir:
        raise ScenarioError(
            f"{path}: is a link to {real}, outside the scenario directory {directory}; "
            "scenario files are read only from inside it"
        )
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ScenarioError(f"{path}: is not a regular file")
        if st.st_size > MAX_BYTES:
            raise ScenarioError(
                f"{path}: is {st.st_size} bytes; a scenario has at most {MAX_BYTES}"
            )
        return os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)


def _depth(value: object, limit: int) -> int:
    """How deep tables and arrays nest in ``value``, counting no further than ``limit``."""
    if limit <= 0 or not isinstance(value, (dict, list)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(item, limit - 1) for item in items), default=0)


def load_file(path: Path, directory: Path | None = None) -> Scenario:
    """Read and validate one scenario file (from ``directory``, default its own).

    Every malformed file is a :class:`ScenarioError` naming it, whatever is
    wrong: bytes that are not UTF-8, nesting deep enough to exhaust the
    parser's recursion, values of the wrong type.
    """
    raw = _read(path, path.parent if directory is None else directory)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{path}: is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: is not valid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: nests too deeply to be a scenario") from None
    if _depth(data, MAX_DEPTH + 1) > MAX_DEPTH:
        raise ScenarioError(f"{path}: nests tables or arrays more than {MAX_DEPTH} deep")
    try:
        return _scenario(path, data)
    except ScenarioError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise ScenarioError(f"{path}: malformed ({type(exc).__name__}: {exc})") from None


def _scenario(path: Path, data: Mapping[str, Any]) -> Scenario:
    top = _Reader(path, data, "", _TOP)
    name = top.get("name", str, required=True)
    if name != path.stem:
        top.fail("name", f"must equal the file name without .toml ({path.stem!r}), got {name!r}")
    description = top.get("description", str, required=True).strip()
    if not description:
        top.fail("description", "must say why the scenario matters; it is empty")
    environment = _environment(top.table_of("environment", _ENVIRONMENT))
    wheel = _wheel(top.table_of("wheel", _WHEEL))
    request = _request(top.table_of("request", _REQUEST), environment)
    expect = top.table_of("expect", _EXPECT)
    installers = _installers(top)
    return Scenario(
        name=name,
        description=description,
        path=path,
        environment=environment,
        wheel=wheel,
        request=request,
        outcome=expect.choice("outcome", OUTCOMES),
        message=expect.choice("message", MESSAGES),
        references=top.strings("references"),
        installers=MappingProxyType(installers),
    )


def _environment(r: _Reader) -> EnvironmentSpec:
    kind = r.choice("kind", KINDS, "system")
    locked = r.strings("locked", ("system",))
    for role in locked:
        if role not in LOCK_ROLES:
            r.fail("locked", f"lists {role!r}; roles are {', '.join(LOCK_ROLES)}")
    if kind == "venv" and "externally_managed" in r.table:
        r.fail("externally_managed", "applies to kind = 'system' only (PEP 668 exempts venvs)")
    if kind == "system" and "system_site_packages" in r.table:
        r.fail("system_site_packages", "applies to kind = 'venv' only")
    preinstalled = r.strings("preinstalled")
    for spec in preinstalled:
        _check_pin(r, spec)
    return EnvironmentSpec(
        kind=kind,
        locked=tuple(sorted(set(locked))),
        home=r.choice("home", HOME_STATES, "present"),
        user_site=r.get("user_site", bool, True),
        externally_managed=r.get("externally_managed", bool, False),
        system_site_packages=r.get("system_site_packages", bool, False),
        preinstalled=preinstalled,
        lock_mode=r.choice("lock_mode", LOCK_MODES, "deny"),
    )


def _check_pin(r: _Reader, spec: str) -> None:
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        r.fail("preinstalled", f"entries must read NAME==VERSION; {spec!r}: {exc}")
    pins = list(req.specifier)
    if len(pins) != 1 or pins[0].operator != "==" or req.extras or req.marker or req.url:
        r.fail("preinstalled", f"entries must read NAME==VERSION, got {spec!r}")
    try:
        Version(pins[0].version)
    except InvalidVersion:
        r.fail("preinstalled", f"{spec!r} does not pin a valid version")


def _wheel(r: _Reader) -> WheelSpec:
    name = r.get("name", str, "demo")
    if canonicalize_name(name).replace("-", "_") != name:
        r.fail("name", f"must be a normalized module-like name (e.g. 'demo'), got {name!r}")
    version = r.get("version", str, "1.0")
    try:
        Version(version)
    except InvalidVersion:
        r.fail("version", f"must be a valid version, got {version!r}")
    return WheelSpec(name, version, r.get("console_scripts", bool, True))


def _request(r: _Reader, environment: EnvironmentSpec) -> Request:
    request = Request(
        user=r.get("user", bool, None),
        user_via=r.choice("user_via", USER_VIA, "flag"),
        prefix=r.get("prefix", bool, False),
        target=r.get("target", bool, False),
        root=r.get("root", bool, False),
        break_system_packages=r.get("break_system_packages", bool, False),
        upgrade=r.get("upgrade", bool, False),
    )
    if "user_via" in r.table and request.user is None:
        r.fail("user_via", "needs 'user' set to true or false")
    if sum((request.prefix, request.target, request.root)) > 1:
        r.fail("prefix", "prefix, target and root are mutually exclusive in one request")
    if request.upgrade and not environment.preinstalled:
        r.fail("upgrade", "needs environment.preinstalled: there is nothing to upgrade")
    return request


def _installers(top: _Reader) -> dict[str, InstallerExpectation]:
    table = top.get("installer", dict, {})
    found = {}
    for name in sorted(table):
        if not isinstance(table[name], dict):
            top.fail(f"installer.{name}", "must be a table")
        r = _Reader(top.path, table[name], f"installer.{name}", _INSTALLER)
        if "outcome" in r.table and "diverges" in r.table:
            r.fail(
                "diverges",
                "contradicts 'outcome' in the same table: an installer either "
                "is expected to give that outcome, or diverges from pip's with a reason",
            )
        diverges = None
        if "diverges" in r.table:
            d = r.table_of("diverges", _DIVERGES)
            reason = d.get("reason", str, required=True)
            diverges = (d.choice("outcome", OUTCOMES), reason)
        breaks_table = r.get("breaks", dict, {})
        for key, reason in breaks_table.items():
            if key not in INVARIANTS:
                r.fail("breaks", f"names invariant {key!r}; invariants are {', '.join(INVARIANTS)}")
            if not isinstance(reason, str) or not reason.strip():
                r.fail(f"breaks.{key}", "must be a non-empty reason string")
        found[name] = InstallerExpectation(
            outcome=r.choice("outcome", OUTCOMES),
            diverges=diverges,
            breaks=MappingProxyType(dict(sorted(breaks_table.items()))),
        )
    return found


def load_dir(directory: Path) -> list[Scenario]:
    """Every ``*.toml`` in ``directory``, sorted by name."""
    if not directory.is_dir():
        raise ScenarioError(f"{directory}: scenario directory does not exist")
    return [load_file(p, directory) for p in sorted(directory.glob("*.toml"))]


def load_all(extra_dirs: Iterable[Path] = ()) -> list[Scenario]:
    """Built-in scenarios plus those in ``extra_dirs``; names must be unique."""
    scenarios = load_dir(BUILTIN_DIR)
    seen = {s.name: s.path for s in scenarios}
    for directory in extra_dirs:
        for scenario in load_dir(directory):
            if scenario.name in seen:
                raise ScenarioError(
                    f"{scenario.path}: key 'name' must be unique across scenario "
                    f"directories; {scenario.name!r} is also defined in {seen[scenario.name]}"
                )
            seen[scenario.name] = scenario.path
            scenarios.append(scenario)
    return sorted(scenarios, key=lambda s: s.name)
