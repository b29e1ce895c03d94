"""Errors raised by pytest-installperm.

Every message names the rule that was broken and the value that broke it, so a
failure reads as a diagnosis rather than a stack trace. Each class also derives
from the builtin a caller would naturally catch: a bad role is a ``ValueError``,
a wrong placement is an ``AssertionError``.
"""

from __future__ import annotations


class InstallPermError(Exception):
    """Base class of every error this plugin raises on purpose."""


class InterpreterError(InstallPermError, ValueError):
    """A base interpreter is missing or cannot be relocated into a sandbox.

    Raised where a usage error would be (pytest's own UsageError is final):
    the message names the path and the reason.
    """


class RoleError(InstallPermError, ValueError):
    """An unknown role, home state or lock mode was asked for."""


class BackendError(InstallPermError, RuntimeError):
    """A backend failed to start. Never turned into a pass: the test errors."""


class CacheError(InstallPermError, OSError):
    """The template cache directory is unusable: names the path and why."""


class LockUnavailable(InstallPermError):
    """No backend can make the asked-for lock hold here; the fixture skips."""


class PlacementError(InstallPermError, AssertionError):
    """A wheel's files are not where the verdict expected them."""


class WheelError(InstallPermError, ValueError):
    """A wheel could not be built or read: names the file and the problem."""


class ScenarioError(InstallPermError, ValueError):
    """A scenario file is malformed: names the file, the key and the rule."""


class FakefsError(InstallPermError, RuntimeError):
    """The in-process (pyfakefs) mode was asked for something it cannot honour.

    (pytest's UsageError is final, so this is a RuntimeError; the message names
    the conflict.)
    """


class ContainmentError(InstallPermError, AssertionError):
    """A child wrote outside its sandbox; names every path it reached."""


class UnsafePathError(InstallPermError, OSError):
    """Sandbox content the harness will not follow: a symlink, a fifo, a device,
    or a path out of the sandbox, where a file was expected. Names the path."""


class UnreadableArgumentError(InstallPermError, PermissionError):
    """A path handed to a child that its uid cannot read and that cannot be
    staged (a directory); names the path and the uid, before anything runs."""
