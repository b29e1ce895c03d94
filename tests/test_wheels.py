"""make_wheel and read_wheel: valid wheels out, every bad one refused by name.

No installer runs here: building and reading a wheel takes milliseconds, and
``installer`` (the reference implementation) is the judge of validity.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from pathlib import Path

import pytest
from installer.sources import WheelFile
from installer.utils import parse_metadata_file

from pytest_installperm import MakeWheel, WheelError, build_wheel, read_wheel
from pytest_installperm.placement import destinations, prefix_scheme, target_scheme
from pytest_installperm.schemes import SCHEME_KEYS, Schemes
from pytest_installperm.wheels import (
    KIND_ENTRY_POINT,
    KIND_FILE,
    KIND_SCRIPT,
    file_hash,
    install_wheel,
    platform_tag,
)
from pytest_installperm.wheels.build import WheelContents

FULL: WheelContents = {
    "console_scripts": {"demo": "demo:main"},
    "gui_scripts": {"demo-gui": "demo:main"},
    "scripts": {"demo-sh": "print('hi')\n"},
    "data": {"share/demo/readme.txt": "data\n"},
    "headers": {"demo.h": "int demo;\n"},
}


def _rewrite(wheel: Path, target: Path, edit: dict[str, bytes | None]) -> Path:
    """Copy ``wheel`` to ``target`` with members replaced (None drops one)."""
    out = target / wheel.name
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = edit.get(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
    return out


def _members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_full_wheel_is_valid_and_reads_back(make_wheel: MakeWheel) -> None:
    wheel = make_wheel("demo", "1.0", **FULL)
    assert wheel.name == "demo-1.0-py3-none-any.whl"
    with WheelFile.open(wheel) as source:
        source.validate_record()  # hashes and sizes included
        wheel_meta = parse_metadata_file(source.read_dist_info("WHEEL"))
        assert wheel_meta["Root-Is-Purelib"] == "true"
        assert wheel_meta.get_all("Tag") == ["py3-none-any"]
    layout = read_wheel(wheel)
    got = {(m.scheme, m.path, m.kind) for m in layout.members}
    assert got == {
        ("data", "share/demo/readme.txt", KIND_FILE),
        ("headers", "demo.h", KIND_FILE),
        ("purelib", "demo/__init__.py", KIND_FILE),
        ("purelib", "demo-1.0.dist-info/METADATA", KIND_FILE),
        ("purelib", "demo-1.0.dist-info/WHEEL", KIND_FILE),
        ("purelib", "demo-1.0.dist-info/entry_points.txt", KIND_FILE),
        ("scripts", "demo", KIND_ENTRY_POINT),
        ("scripts", "demo-gui", KIND_ENTRY_POINT),
        ("scripts", "demo-sh", KIND_SCRIPT),
    }
    script = next(m for m in layout.members if m.kind == KIND_SCRIPT)
    assert _members(wheel)["demo-1.0.data/scripts/demo-sh"].startswith(b"#!python\n")
    assert script.body == b"print('hi')\n"
    assert not layout.corrupt
    assert all(m.record_hash == m.content_hash for m in layout.members if m.kind == KIND_FILE)


def test_scripts_are_executable_in_the_archive(make_wheel: MakeWheel) -> None:
    with zipfile.ZipFile(make_wheel("demo", scripts={"run": "x = 1\n"})) as archive:
        mode = archive.getinfo("demo-1.0.data/scripts/run").external_attr >> 16
    assert mode & stat.S_IXUSR


def test_platlib_wheel_has_a_platform_tag(make_wheel: MakeWheel) -> None:
    wheel = make_wheel(
        "fast", "2.1", platlib={"fast/__init__.py": ""}, purelib={"fast_helpers.py": ""}
    )
    tag = platform_tag()
    assert wheel.name == f"fast-2.1-{tag}.whl"
    assert not tag.endswith("-any")
    layout = read_wheel(wheel)
    assert layout.root_scheme == "platlib"
    assert ("platlib", "fast/__init__.py") in {(m.scheme, m.path) for m in layout.members}
    assert ("purelib", "fast_helpers.py") in {(m.scheme, m.path) for m in layout.members}
    assert "fast-2.1.data/purelib/fast_helpers.py" in _members(wheel)


def test_equal_inputs_give_equal_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = build_wheel(tmp_path / "a", "demo", **FULL)
    two = build_wheel(tmp_path / "b", "demo", **FULL)
    assert one.read_bytes() == two.read_bytes()


def test_names_and_versions_are_normalised(make_wheel: MakeWheel) -> None:
    wheel = make_wheel("Demo.Pkg", "01.0.0")
    assert wheel.name == "demo_pkg-1.0.0-py3-none-any.whl"
    layout = read_wheel(wheel)
    assert (layout.project, layout.metadata_name, layout.version) == (
        "demo-pkg",
        "Demo.Pkg",
        "1.0.0",
    )
    assert ("purelib", "demo_pkg/__init__.py") in {(m.scheme, m.path) for m in layout.members}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "not a valid project name (PEP 508"),
        ({"name": "-demo"}, "not a valid project name"),
        ({"version": "one"}, "wheel version 'one': not a valid PEP 440 version"),
        ({"tag": "py3-none"}, "wheel tag 'py3-none': not a valid tag set"),
        ({"purelib": {"../escape.py": ""}}, "root path '../escape.py': must be a relative path"),
        ({"data": {"/etc/passwd": ""}}, "data path '/etc/passwd': must be a relative path"),
        ({"purelib": {"demo-1.0.dist-info/X": ""}}, "the .dist-info directory is generated"),
    ],
)
def test_bad_input_is_refused_with_the_rule(
    make_wheel: MakeWheel, kwargs: dict[str, object], message: str
) -> None:
    args = {"name": "demo", "version": "1.0", **kwargs}
    with pytest.raises(WheelError, match=re.escape(message)):
        make_wheel(**args)  # type: ignore[arg-type]


def test_fixture_writes_where_a_dropped_uid_can_read(
    make_wheel: MakeWheel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wheel = make_wheel("demo")
    basetemp = tmp_path_factory.getbasetemp()
    assert basetemp not in wheel.parents
    assert stat.S_IMODE(os.stat(wheel).st_mode) == 0o644
    for parent in (wheel.parent, wheel.parent.parent):
        assert os.stat(parent).st_mode & stat.S_IXOTH, parent


# -- reading: bad input never passes ----------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WheelError, match=r"demo-1.0-py3-none-any.whl: not a wheel: no such file"):
        read_wheel(tmp_path / "demo-1.0-py3-none-any.whl")


def test_not_a_wheel_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(WheelError, match=r"notes.txt: not a wheel: bad file name"):
        read_wheel(path)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_text("hello")
    with pytest.raises(WheelError, match=r"demo-1.0-py3-none-any.whl: not a wheel: not a zip"):
        read_wheel(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"demo-1.0.dist-info/RECORD": None}, r"demo-1.0.dist-info/RECORD is missing"),
        (
            {"demo-1.0.dist-info/RECORD": b"demo/__init__.py,sha256=x\n"},
            r"RECORD is broken: .*expected 3 elements, got 2",
        ),
        (
            {"demo-1.0.dist-info/RECORD": b"demo/__init__.py,,\n"},
            r"RECORD is broken: .*demo-1.0.dist-info/METADATA is not mentioned in RECORD",
        ),
        (
            {"demo-1.0.dist-info/RECORD": b"demo/__init__.py,md5sum=abc,3\n"},
            r"RECORD is broken: .*invalid hash algorithm 'md5sum'",
        ),
        ({"demo-1.0.dist-info/WHEEL": None}, r"demo-1.0.dist-info/WHEEL is missing"),
        (
            {"demo-1.0.dist-info/WHEEL": b"Wheel-Version: 2.0\nRoot-Is-Purelib: true\n"},
            r"WHEEL: Wheel-Version 2.0 is not 1.x",
        ),
        (
            {"demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n"},
            r"WHEEL: Root-Is-Purelib must be 'true' or 'false', got None",
        ),
        (
            {"demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: other\nVersion: 1.0\n"},
            r"METADATA Name 'other' does not match the file name's 'demo'",
        ),
    ],
)
def test_broken_wheels_name_the_file_and_the_problem(
    make_wheel: MakeWheel, tmp_path: Path, edit: dict[str, bytes | None], message: str
) -> None:
    bad = _rewrite(make_wheel("demo"), tmp_path, edit)
    with pytest.raises(WheelError, match=message) as info:
        read_wheel(bad)
    assert str(bad) in str(info.value)


def test_corrupt_hash_is_read_with_both_hashes(make_wheel: MakeWheel, tmp_path: Path) -> None:
    wheel = make_wheel("demo")
    record = _members(wheel)["demo-1.0.dist-info/RECORD"]
    bad = _rewrite(
        wheel,
        tmp_path,
        {
            "demo-1.0.dist-info/RECORD": record.replace(
                b"demo/__init__.py,sha256=", b"demo/__init__.py,sha256=AAAA"
            )
        },
    )
    (member,) = read_wheel(bad).corrupt
    real = file_hash(_members(wheel)["demo/__init__.py"])
    assert member.path == "demo/__init__.py"
    assert member.content_hash == real
    assert member.record_hash == "sha256=AAAA" + real.split("=", 1)[1]


# -- destinations -------------------------------------------------------------


def test_destinations_for_a_target_and_a_mapping(make_wheel: MakeWheel, tmp_path: Path) -> None:
    layout = read_wheel(make_wheel("Demo", **FULL))
    found = {str(p.relative_to(tmp_path)) for p in destinations(layout, target_scheme(tmp_path))}
    assert found == {
        "bin/demo",
        "bin/demo-gui",
        "bin/demo-sh",
        "demo/__init__.py",
        "demo-1.0.dist-info/METADATA",
        "demo-1.0.dist-info/WHEEL",
        "demo-1.0.dist-info/entry_points.txt",
        "include/python/demo/demo.h",
        "share/demo/readme.txt",
    }
    scheme = {k: tmp_path / k for k in ("purelib", "platlib", "scripts", "data", "headers")}
    found = {str(p.relative_to(tmp_path)) for p in layout.destinations(scheme)}
    assert "headers/demo/demo.h" in found and "scripts/demo-sh" in found
    with pytest.raises(WheelError, match=r"lacks key.*headers"):
        layout.destinations({k: v for k, v in scheme.items() if k != "headers"})


def test_prefix_scheme_is_the_environments_prefix_layout(tmp_path: Path) -> None:
    class Env:
        schemes = Schemes(
            {k: Path("/opt/py/local") / k for k in SCHEME_KEYS},
            {k: Path("/home/u/.local") / k for k in SCHEME_KEYS},
            {
                "purelib": Path("lib/python3.11/site-packages"),
                "platlib": Path("lib/python3.11/site-packages"),
                "scripts": Path("bin"),
                "data": Path("."),
                "headers": Path("include/python3.11"),
            },
        )

        def paths(self, role: str, base: Path | None = None) -> object:
            return self.schemes.paths(role, base)

    scheme = prefix_scheme(Env(), tmp_path)  # type: ignore[arg-type]
    assert scheme.paths["purelib"] == tmp_path / "lib/python3.11/site-packages"
    assert scheme.paths["scripts"] == tmp_path / "bin"


# -- preinstalling ------------------------------------------------------------


def test_install_wheel_owns_files_like_a_package_manager(
    make_wheel: MakeWheel, tmp_path: Path
) -> None:
    wheel = make_wheel("demo", **FULL)
    scheme = {
        "purelib": tmp_path / "site",
        "platlib": tmp_path / "site",
        "scripts": tmp_path / "bin",
        "data": tmp_path,
        "headers": tmp_path / "include",
    }
    old = os.umask(0o077)
    try:
        layout = install_wheel(wheel, scheme, Path("/usr/bin/python3"))
    finally:
        os.umask(old)
    assert layout.project == "demo"
    dist_info = tmp_path / "site" / "demo-1.0.dist-info"
    assert (dist_info / "INSTALLER").read_text() == "installperm\n"
    assert "demo/__init__.py,sha256=" in (dist_info / "RECORD").read_text()
    assert (tmp_path / "include" / "demo" / "demo.h").is_file()
    assert (tmp_path / "bin" / "demo").read_text().startswith("#!/usr/bin/python3\n")
    assert stat.S_IMODE(os.stat(tmp_path / "bin" / "demo").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "site" / "demo" / "__init__.py").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "site" / "demo").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dist_info / "RECORD").st_mode) == 0o644


def test_install_wheel_refuses_a_corrupt_wheel(make_wheel: MakeWheel, tmp_path: Path) -> None:
    wheel = make_wheel("demo")
    record = _members(wheel)["demo-1.0.dist-info/RECORD"]
    bad = _rewrite(
        wheel,
        tmp_path,
        {
            "demo-1.0.dist-info/RECORD": record.replace(
                b"demo/__init__.py,sha256=", b"demo/__init__.py,sha256=AAAA"
            )
        },
    )
    scheme = {k: tmp_path / "s" / k for k in ("purelib", "platlib", "scripts", "data", "headers")}
    with pytest.raises(
        WheelError,
        match=r"RECORD hashes are wrong: demo/__init__.py "
        r"\(RECORD sha256=AAAA.*, content sha256=",
    ):
        install_wheel(bad, scheme, Path("/usr/bin/python3"))
    assert not (tmp_path / "s").exists()
