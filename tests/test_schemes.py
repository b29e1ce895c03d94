"""Schemes and roles: one definition each, used by the environment, the matrix
and the verdicts (real runs check them in test_engine and test_matrix)."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest

from pytest_installperm.errors import RoleError
from pytest_installperm.roles import ALWAYS_ALLOWED, SCRATCH, is_under, role_of, sandbox_roles
from pytest_installperm.schemes import SCHEME_KEYS, Schemes, parse, relative_layout, rerooted

#: Debian's posix_local system scheme, as a relocated Debian interpreter reports it.
DEBIAN_SYSTEM = {
    "purelib": Path("/s/prefix/local/lib/python3.11/dist-packages"),
    "platlib": Path("/s/prefix/local/lib/python3.11/dist-packages"),
    "scripts": Path("/s/prefix/local/bin"),
    "data": Path("/s/prefix/local"),
    "headers": Path("/s/prefix/local/include/python3.11"),
}
USER = {k: Path("/s/home/.local") / k for k in SCHEME_KEYS}
#: posix_prefix for base /s/prefix, as the session's probe reports it.
POSIX_PREFIX = {
    "purelib": "/s/prefix/lib/python3.11/site-packages",
    "platlib": "/s/prefix/lib/python3.11/site-packages",
    "scripts": "/s/prefix/bin",
    "data": "/s/prefix",
    "headers": "/s/prefix/include/python3.11",
}


def debian() -> Schemes:
    return Schemes(DEBIAN_SYSTEM, USER, relative_layout(POSIX_PREFIX, "/s/prefix"))


def test_prefix_is_posix_prefix_not_debians_posix_local(tmp_path: Path) -> None:
    paths = debian().paths("prefix", base=tmp_path)
    assert paths["purelib"] == tmp_path / "lib/python3.11/site-packages"
    assert paths["scripts"] == tmp_path / "bin"
    assert paths["data"] == tmp_path
    assert "local" not in paths["purelib"].parts


def test_target_root_and_own_schemes(tmp_path: Path) -> None:
    schemes = debian()
    target = schemes.scheme("target", base=tmp_path)
    assert target.paths["purelib"] == target.paths["data"] == tmp_path
    assert target.paths["scripts"] == tmp_path / "bin"
    assert target.header_dirs == (tmp_path / "include" / "python", tmp_path / "include")
    root = schemes.paths("root", base=tmp_path)
    assert root["purelib"] == tmp_path / "s/prefix/local/lib/python3.11/dist-packages"
    assert rerooted(USER, tmp_path)["scripts"] == tmp_path / "s/home/.local/scripts"
    assert schemes.paths("system") == DEBIAN_SYSTEM
    assert schemes.paths("user") == USER


@pytest.mark.parametrize(
    ("name", "base", "match"),
    [
        ("elsewhere", None, "scheme paths exist for 'system', 'user', 'prefix'"),
        ("prefix", None, "needs base=DIR"),
        ("system", "/x", "takes no base"),
    ],
)
def test_bad_scheme_requests_name_the_value(name: str, base: str | None, match: str) -> None:
    with pytest.raises(RoleError, match=match):
        debian().paths(name, base)


def test_unknown_prefix_layout_is_an_error() -> None:
    with pytest.raises(RoleError, match="--prefix layout is unknown"):
        Schemes(DEBIAN_SYSTEM, USER).paths("prefix", base="/x")
    known = Schemes(DEBIAN_SYSTEM, USER, {"purelib": PurePath("lib/site")})
    assert known.prefix_schemes() == ("posix_prefix",)
    with pytest.raises(RoleError, match=r"scheme 'posix_local': .* layout is unknown"):
        known.prefix("/x", "posix_local")


def test_spellings() -> None:
    assert parse("user") == ("user", None)
    assert parse("prefix:/x") == ("prefix", Path("/x"))
    for bad in ("prefix", "user:/x", "nowhere:/x", "target:"):
        with pytest.raises(RoleError, match=repr(bad)):
            parse(bad)


def test_roles_are_most_specific_and_lexical() -> None:
    roles = sandbox_roles(
        Path("/s"),
        prefix=Path("/s/venv"),
        scripts=Path("/s/venv/bin"),
        userbase=Path("/s/home/.local"),
        venv=True,
    )
    assert role_of(roles, Path("/s/venv/bin/x")) == "system-scripts"
    assert role_of(roles, Path("/s/venv/lib")) == "system"
    assert role_of(roles, Path("/s/home/.local/lib")) == "user"
    assert role_of(roles, Path("/s/prefix/lib")) == "base"
    assert role_of(roles, Path("/s/cachex")) is None
    assert is_under(Path("/a/b"), Path("/a")) and not is_under(Path("/ab"), Path("/a"))
    assert SCRATCH < ALWAYS_ALLOWED and "stage" not in ALWAYS_ALLOWED
