"""pip 26.3's install decision as an executable specification.

Why an oracle: a matrix that only compared installers with each other could
not tell which one is right. pip's behaviour is the reference users know, so
this module writes it down as a pure function of a scenario, and our own tests
run every built-in scenario through real pip and through :func:`decide` and fail
on any disagreement. When pip changes, those tests say exactly which rule moved.

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
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_installperm.scenarios import Scenario

PIP_VERSION = "26.3"


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


def _oserror(scenario: Scenario, *, user: bool, erofs: bool) -> str:
    if erofs:
        return "oserror-no-hint"  # only EACCES gets a hint from pip
    if scenario.environment.kind == "venv" or user:
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


def decide(scenario: Scenario) -> Expected:
    """pip 26.3's outcome and message kind for ``scenario``."""
    request, env = scenario.request, scenario.environment
    if request.user is True and request.target:
        return Expected("error", "user-with-target", "--user with --target is refused")
    exempt = request.prefix or request.target or request.root or request.break_system_packages
    if env.kind == "system" and env.externally_managed and not exempt:
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
        if env.kind == "venv" and not env.system_site_packages:
            return Expected(
                "error", "user-in-venv", "--user in a venv without system site packages"
            )
        if not user_site_enabled(scenario):
            return Expected("error", "user-site-disabled", "--user with the user site disabled")
        user, why = True, "--user"
    elif request.prefix or request.target:
        user, why = False, "--prefix/--target"
    elif not user_site_enabled(scenario):
        user, why = False, "user site disabled: no fallback"
    elif _system_lib_writable(scenario):
        user, why = False, "system site writable"
    else:
        user, why, message = True, "system site not writable: fallback to user", "fallback"
    destination = (
        "target" if request.target else "prefix" if request.prefix else "user" if user else "system"
    )
    fails, erofs = _destination_fails(scenario, destination)
    if fails:
        return Expected(
            "error",
            _oserror(scenario, user=user, erofs=erofs),
            f"{why}; then {destination} is not writable",
        )
    return Expected(destination, message, why)
