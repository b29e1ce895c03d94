"""pip's install decision, release by release, as an executable specification.

Why an oracle: a matrix that only compared installers with each other could
not tell which one is right. pip's behaviour is the reference users know, so
this module writes it down as a pure function of a scenario and a pip version,
and our own tests run the built-in scenarios through real pip releases and
through :func:`decide` and fail on any disagreement. When pip changes, those
tests say exactly which rule moved.

The rules, in pip's order (``commands/install.py``, read for behaviour, not copied):

1. ``--user`` with ``--target`` is refused.
2. PEP 668: a system interpreter with an ``EXTERNALLY-MANAGED`` marker refuses,
   unless ``--prefix``, ``--target``, ``--root`` or ``--break-system-packages``
   is given. ``--user`` is not exempt. Venvs are never externally managed.
3. ``--user`` with ``--prefix`` is refused.
4. The user decision: ``--no-user`` means no; ``--user`` needs the user site
   (refused in a venv without system site packages, or when it is disabled);
   with neither, ``--prefix``/``--target`` or a disabled user site mean no,
   and otherwise pip falls back to the user site when the system purelib or
   platlib is not writable (``os.access``; the scripts directory is never checked).
5. The install then succeeds only if its destination is writable; an OSError is
   reported with a ``--user`` hint only for EACCES outside a venv and outside a
   user install.

:data:`CHANGES` says since which release each of these holds, with the
reference; :func:`decide` applies only the ones the given release has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from packaging.version import InvalidVersion, Version

from pytest_installperm.scenarios import Scenario

#: The release the rules default to: the pip the test extra pins.
PIP_VERSION = "26.3"


@dataclass(frozen=True)
class Change:
    """One change of pip's behaviour: the first release that has it, and why."""

    since: Version
    rule: str
    reference: str


#: pip's behaviour changes since 20.0 that a scenario can see; each is proved
#: on both sides against the real releases (tests/test_versions.py).
CHANGES: Mapping[str, Change] = MappingProxyType(
    {
        "fallback": Change(
            Version("20.0"),
            "without --user, --prefix or --target, an unwritable site-packages makes pip "
            "install into the user site ('Defaulting to user installation')",
            "pip 20.0 release notes, pypa/pip#1668",
        ),
        "venv-user": Change(
            Version("20.0"),
            "--user in a venv (PEP 405) without system site packages is refused; before, "
            "pip only recognised virtualenv's own marker and installed into the user site",
            "pip 20.0 release notes, pypa/pip#5702, pypa/pip#7155",
        ),
        "user-with-target": Change(
            Version("20.1"),
            "--user with --target is refused with 'Can not combine'; before, distutils "
            "failed with a traceback (DistutilsOptionError)",
            "pip 20.1 release notes, pypa/pip#7249",
        ),
        "oserror-wording": Change(
            Version("21.0"),
            "the error reads 'due to an OSError', no longer 'due to an EnvironmentError'",
            "pip 21.0, pypa/pip commit d282fb94 (Python 2 support removed)",
        ),
        "venv-no-user-hint": Change(
            Version("21.1"),
            "a permission error in a venv no longer suggests --user",
            "pip 21.1 release notes, pypa/pip#9409",
        ),
        "externally-managed": Change(
            Version("23.0"),
            "PEP 668: an EXTERNALLY-MANAGED marker makes pip refuse to install",
            "pip 23.0 release notes, pypa/pip#11381, PEP 668",
        ),
        "break-system-packages": Change(
            Version("23.0.1"),
            "--break-system-packages overrides the PEP 668 marker",
            "pip 23.0.1 release notes, pypa/pip#11780",
        ),
        "user-site-disabled": Change(
            Version("25.3"),
            "--user is refused when site.ENABLE_USER_SITE is false",
            "pip 25.3 release notes, pypa/pip#8794",
        ),
        "posix-local-prefix": Change(
            Version("26.3"),
            "--prefix on Debian's posix_local scheme writes posix_prefix paths "
            "(P/lib/pythonX.Y/site-packages, not P/local/lib/pythonX.Y/dist-packages)",
            "pypa/pip#13634",
        ),
    }
)


def pip_release(version: str | Version | None) -> Version:
    """``version`` as a release (None: :data:`PIP_VERSION`); a development
    version counts as the release it leads to."""
    if isinstance(version, Version):
        return version
    try:
        return Version(version or PIP_VERSION)
    except InvalidVersion:
        raise ValueError(f"pip version {version!r} is not a PEP 440 version") from None


def is_default(version: str | Version | None) -> bool:
    """Whether ``version`` is (a build of) :data:`PIP_VERSION`, the release the
    scenario files' own ``[expect]`` tables describe."""
    return Version(pip_release(version).base_version) == Version(PIP_VERSION)


def has(change: str, version: str | Version | None) -> bool:
    """Whether pip ``version`` has ``change`` (a key of :data:`CHANGES`)."""
    return Version(pip_release(version).base_version) >= CHANGES[change].since


def prefix_scheme(version: str | Version | None, scheme_names: tuple[str, ...]) -> str:
    """The sysconfig scheme ``--prefix`` installs by: Debian's interpreters have a
    ``posix_local`` scheme (``P/local/lib/pythonX.Y/dist-packages``) that pip
    used for ``--prefix`` too, until it mapped it to ``posix_prefix``."""
    if "posix_local" in scheme_names and not has("posix-local-prefix", version):
        return "posix_local"
    return "posix_prefix"


def messages(patterns: Mapping[str, str], version: str | Version | None) -> Mapping[str, str]:
    """pip's message patterns (message kind -> regex) in the words of ``version``."""
    found = dict(patterns)
    if not has("oserror-wording", version):
        found = {k: re.sub(r"\bOSError\b", "EnvironmentError", v) for k, v in found.items()}
    if not has("user-with-target", version) and "user-with-target" in found:
        found["user-with-target"] = r"DistutilsOptionError: can't combine user with prefix"
    return MappingProxyType(found)


@dataclass(frozen=True)
class Expected:
    """pip's outcome for a scenario, and which of its messages explains it."""

    outcome: str
    message: str
    #: The rule of the module docstring that decided, in words, for reports.
    rule: str


def user_site_enabled(scenario: Scenario) -> bool:
    """``site.ENABLE_USER_SITE`` as the scenario's interpreter will see it."""
    env = scenario.environment
    if not env.user_site:
        return False
    return env.kind == "system" or env.system_site_packages


def _system_lib_writable(scenario: Scenario) -> bool:
    """pip's ``site_packages_writable``: purelib and platlib only, never scripts."""
    return scenario.request.root or "system" not in scenario.environment.locked


def _oserror(scenario: Scenario, release: Version, *, user: bool, erofs: bool) -> str:
    if erofs:
        return "oserror-no-hint"  # only EACCES gets a hint from pip
    venv = scenario.environment.kind == "venv" and has("venv-no-user-hint", release)
    if venv or user:
        return "oserror-check-permissions"
    return "oserror-consider-user"


def _destination_fails(scenario: Scenario, destination: str) -> tuple[bool, bool]:
    """(fails, by EROFS): does writing the wheel to ``destination`` hit a lock?"""
    env = scenario.environment
    readonly = env.lock_mode == "readonly-fs"
    if destination == "user":
        locked = "user" in env.locked or "home" in env.locked or env.home == "unwritable"
        return locked or env.home == "missing", readonly and locked
    if destination == "system" and not scenario.request.root:
        locked = "system" in env.locked or (
            "system-scripts" in env.locked and scenario.wheel.console_scripts
        )
        return locked, readonly and locked
    return False, False  # prefix, target and root directories are always writable


def decide(scenario: Scenario, pip_version: str | Version | None = None) -> Expected:
    """pip's outcome and message kind for ``scenario``, by the rules of release
    ``pip_version`` (default :data:`PIP_VERSION`)."""
    release = pip_release(pip_version)
    request, env = scenario.request, scenario.environment
    if request.break_system_packages and not has("break-system-packages", release):
        # optparse refuses the unknown option: a usage error, which the matrix skips.
        return Expected("error", "usage", f"pip {release} has no --break-system-packages")
    if request.user is True and request.target:
        return Expected("error", "user-with-target", "--user with --target is refused")
    exempt = request.prefix or request.target or request.root or request.break_system_packages
    marked = env.kind == "system" and env.externally_managed
    if marked and not exempt and has("externally-managed", release):
        return Expected(
            "error",
            "externally-managed",
            "PEP 668 marker and no --prefix/--target/--root/--break-system-packages",
        )
    if request.user is True and request.prefix:
        return Expected("error", "user-with-prefix", "--user with --prefix is refused")
    message = "none"
    if request.user is False:
        user, why = False, "--no-user"
    elif request.user is True:
        if env.kind == "venv" and not env.system_site_packages and has("venv-user", release):
            return Expected(
                "error", "user-in-venv", "--user in a venv without system site packages"
            )
        if not user_site_enabled(scenario) and has("user-site-disabled", release):
            return Expected("error", "user-site-disabled", "--user with the user site disabled")
        user, why = True, "--user"
    elif request.prefix or request.target:
        user, why = False, "--prefix/--target"
    elif not user_site_enabled(scenario):
        user, why = False, "user site disabled: no fallback"
    elif _system_lib_writable(scenario):
        user, why = False, "system site writable"
    elif not has("fallback", release):
        user, why = False, f"system site not writable, and pip {release} has no fallback"
    else:
        user, why, message = True, "system site not writable: fallback to user", "fallback"
    destination = (
        "target" if request.target else "prefix" if request.prefix else "user" if user else "system"
    )
    fails, erofs = _destination_fails(scenario, destination)
    if fails:
        return Expected(
            "error",
            _oserror(scenario, release, user=user, erofs=erofs),
            f"{why}; then {destination} is not writable",
        )
    return Expected(destination, message, why)
