"""Readable ``==`` failures for changes and results (``pytest_assertrepr_compare``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pytest_installperm.roles import role_of


def _role_path(path: Path, roles: Mapping[str, Path]) -> str:
    """``role: relative/path`` for the most specific role holding ``path``."""
    name = role_of({k: Path(v) for k, v in roles.items()}, path)
    if name is None:
        return str(path)
    rel = path.relative_to(roles[name])
    return f"{name}: {rel}" if str(rel) != "." else f"{name}: (the role's directory)"


def _change_lines(changes: object) -> list[str]:
    """Sorted ``+``/``~``/``-`` lines, leaves only: a created directory whose
    contents are listed says nothing more (pytest shows 8 lines without -vv)."""
    roles: Mapping[str, Path] = getattr(changes, "roles", {}) or {}
    rows = [("+", p) for p in getattr(changes, "created", ())]
    rows += [("~", p) for p in getattr(changes, "modified", ())]
    rows += [("-", p) for p in getattr(changes, "deleted", ())]
    parents = {parent for _, p in rows for parent in p.parents}
    leaves = [(m, p) for m, p in rows if p not in parents]
    return [
        f"  {mark} {_role_path(p, roles)}"
        for mark, p in sorted(leaves, key=lambda r: (str(r[1]), r[0]))
    ] or ["  (no changes)"]


def _summary(value: object) -> str:
    if not _is_changes(value):
        return repr(value)
    counts = [len(getattr(value, a)) for a in ("created", "modified", "deleted")]
    if not any(counts):
        return "<Changes: none>"
    return "<Changes: {} created, {} modified, {} deleted>".format(*counts)


def _is_changes(value: object) -> bool:
    return all(hasattr(value, a) for a in ("created", "modified", "deleted", "under"))


def _is_result(value: object) -> bool:
    return all(hasattr(value, a) for a in ("describe", "changes", "returncode"))


def explain_comparison(op: str, left: object, right: object) -> list[str] | None:
    """Readable ``==`` failures for changes and results (``pytest_assertrepr_compare``)."""
    if op != "==":
        return None
    if _is_changes(left) or _is_changes(right):
        lines = [f"{_summary(left)} == {_summary(right)}"]
        for side, value in (("left", left), ("right", right)):
            if _is_changes(value):
                lines.append(f"{side} (+ created, ~ modified, - deleted; by role):")
                lines += _change_lines(value)
        if not (_is_changes(left) and _is_changes(right)):
            lines.append(
                "hint: a Changes never equals a set; compare `.all`, `.created`, "
                "`.modified` or `.deleted`, or use result.assert_untouched(role)"
            )
        return lines
    if _is_result(left) or _is_result(right):
        value = left if _is_result(left) else right
        return ["comparison with an installer run failed", *str(value.describe()).splitlines()]  # type: ignore[attr-defined]
    return None


__all__ = [
    "explain_comparison",
]
