"""Which kind of namespace this platform allows, probed once per process.

"mount" (root: new mount, PID, IPC and network namespaces) or "userns" (a
normal user: the same inside a new user namespace). Where neither works the
answer is "none" with the reasons, and no child runs: a test that would need
containment is skipped with them (see :func:`unavailable`).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pytest_installperm.backends.contain import syscalls
from pytest_installperm.backends.contain.channel import Channel
from pytest_installperm.backends.contain.enter import Enter
from pytest_installperm.backends.contain.limits import DEFAULT_LIMITS

#: Namespace modes, best first; "none": containment is not possible here.
MODES = ("mount", "userns", "none")

_MODE: list[tuple[str, str]] = []


def _try(mode: str) -> str | None:
    """Start ``true`` in ``mode``; None if it worked, else why not."""
    syscalls.libc()
    channel = Channel()
    enter = Enter(
        mode,
        None,
        (),
        None,
        None,
        (os.getuid(), os.getgid()),
        os.geteuid() == 0,
        syscalls.cap_last(),
        False,
        DEFAULT_LIMITS.rlimits(),
        (),
        os.getpid(),
        channel.child_fd,
    )
    try:
        done = subprocess.run(
            [shutil.which("true") or "/bin/true"],
            preexec_fn=enter,
            pass_fds=(channel.child_fd,),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=30,
        )
        text, pidfd = channel.receive()
        if pidfd is not None:
            os.close(pidfd)
        if done.returncode == 0 and text == "ok":
            return None
        return text.removeprefix("error ") or f"exit status {done.returncode}"
    except (OSError, subprocess.SubprocessError) as exc:
        return channel.receive()[0].removeprefix("error ") or str(exc)
    finally:
        channel.close()


def namespace_mode() -> tuple[str, str]:
    """("mount"|"userns"|"none", why not the better ones), probed once."""
    if not _MODE:
        reasons = []
        candidates = ("mount", "userns") if os.geteuid() == 0 else ("userns",)
        chosen = "none"
        for mode in candidates:
            why = _try(mode)
            if why is None:
                chosen = mode
                break
            reasons.append(f"{mode}: {why}")
        _MODE.append((chosen, "; ".join(reasons)))
    return _MODE[0]


def unavailable() -> str | None:
    """Why no child can be contained here (a skip reason), or None."""
    mode, why = namespace_mode()
    if mode != "none":
        return None
    return (
        "containment is not possible on this platform (no mount, PID and network "
        "namespaces as root, and no user namespace as a normal user): a child would run "
        f"with access to everything this process can reach, so it does not run ({why})"
    )
