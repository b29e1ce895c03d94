"""Finding a test's processes from the host, by a name the child gives itself.

A contained child sees pids of its own PID namespace only, so it cannot tell
the host which pid it has; it can name itself (``prctl(PR_SET_NAME)``) and the
test looks for that name in the host's /proc.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def canary_name() -> str:
    """A unique process name (at most 15 bytes, the kernel's limit)."""
    return f"ipc{uuid.uuid4().hex[:12]}"


def set_name_code(name: str) -> str:
    """A Python statement that gives the running process ``name``."""
    return f"__import__('ctypes').CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)"


def host_processes_named(name: str) -> list[int]:
    """Live pids (as this process sees them) whose name is ``name``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if comm == name and state not in ("Z", "X"):
            found.append(int(entry))
    return found
