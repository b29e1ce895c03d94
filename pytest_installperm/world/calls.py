"""One in-process call, as a command line run would look: its output, its
log records, and its exit status."""

from __future__ import annotations

import io
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any

from pytest_installperm.run import Exit


def describe_call(
    fn: Callable[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any]
) -> tuple[str, ...]:
    """The call as an argv, for ``describe()``: ``call module.name``, then the arguments."""
    return (
        f"call {getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}",
        *map(repr, args),
        *(f"{k}={v!r}" for k, v in kwargs.items()),
    )


def call_captured(fn: Callable[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any]) -> Exit:
    """Call ``fn``; what it prints or logs (INFO and up) is its output.

    ``returncode`` is 0 when it returned, a ``SystemExit``'s status, else 1
    with the exception's text at the end of ``stderr``.
    """
    out, err = io.StringIO(), io.StringIO()
    value: Any = None
    exception: BaseException | None = None
    start = time.perf_counter()
    with _captured(out, err):
        try:
            value = fn(*args, **kwargs)
            status = 0
        except SystemExit as exc:
            exception, status = exc, _exit_status(exc, err)
        except Exception as exc:
            exception, status = exc, 1
            err.write("".join(traceback.format_exception_only(type(exc), exc)))
    seconds = time.perf_counter() - start
    return Exit(
        status, out.getvalue(), err.getvalue(), seconds=seconds, value=value, exception=exception
    )


def _exit_status(exc: SystemExit, err: io.StringIO) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    err.write(f"{exc.code}\n")
    return 1


class _LogTo(logging.Handler):
    """Log records of a call, as a command line tool would print them."""

    def __init__(self, out: io.StringIO, err: io.StringIO) -> None:
        super().__init__(logging.INFO)
        self.out, self.err = out, err

    def emit(self, record: logging.LogRecord) -> None:
        stream = self.err if record.levelno >= logging.WARNING else self.out
        stream.write(record.getMessage() + "\n")


@contextmanager
def _captured(out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    root = logging.getLogger()
    handler, level = _LogTo(out, err), root.level
    root.addHandler(handler)
    root.setLevel(min(level or logging.WARNING, logging.INFO))
    try:
        with redirect_stdout(out), redirect_stderr(err):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


__all__ = ["call_captured", "describe_call"]
