"""How the contained child reports to the parent: a text and at most one descriptor."""

from __future__ import annotations

import os
import socket


class Channel:
    """A socket pair; the child end is passed to the child (``pass_fds``)."""

    def __init__(self) -> None:
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = self._theirs.fileno()
        self._received: tuple[str, int | None] | None = None

    def receive(self) -> tuple[str, int | None]:
        """What the child sent; call once it has exec'd or failed."""
        if self._received is None:
            self._theirs.close()
            chunks: list[bytes] = []
            fd_received = None
            while True:
                data, fds, _flags, _addr = socket.recv_fds(self._ours, 65536, 1)
                for fd in fds:
                    if fd_received is None:
                        fd_received = fd
                    else:
                        os.close(fd)
                if not data:
                    break
                chunks.append(data)
            self._received = (b"".join(chunks).decode(errors="replace"), fd_received)
        return self._received

    def close(self) -> None:
        self._theirs.close()
        self._ours.close()
