"""Options and ini values: checked once at start-up, one line per bad value.

Before, a bad ini value failed inside every item with a long traceback, and
the matrix items carried no row, so the JSON report showed no failure. Each
case here runs an inner session with a test that would use the value and
checks the exact error line, the exit status, and that nothing ran.
"""

from __future__ import annotations

import pwd
import textwrap
from pathlib import Path

import pytest

from pytest_installperm.options import OPTIONS_KEY, Options, option

NEEDS_SESSION = """
    def test_uses_the_session(installperm):
        pass
"""


def _run(pytester: pytest.Pytester, ini: str, *args: str) -> pytest.RunResult:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_inner=textwrap.dedent(NEEDS_SESSION))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def _refused(result: pytest.RunResult, line: str) -> None:
    """Exactly one error line, the given one; no test ran."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [entry for entry in result.errlines if entry.strip()]
    assert errors == [f"ERROR: {line}"]
    assert "passed" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        (
            "installperm_backend = bogus",
            "'bogus' is not a backend; allowed: auto, chmod, privdrop, mountns",
        ),
        (
            "installperm_uid = no-such-user-here",
            "'no-such-user-here' is no user on this machine; allowed: a user name or a uid "
            "number other than 0 (root, whom no lock stops)",
        ),
        (
            "installperm_uid = 0",
            "'0' is root; allowed: a user name or a uid number other than 0 (root, whom no "
            "lock stops)",
        ),
        ("installperm_basetemp = nowhere", "'nowhere' is not an existing directory"),
        (
            "installperm_report = out/is-a-dir",
            "'out/is-a-dir' is a directory; give a file path",
        ),
        (
            "installperm_markdown = a-file/matrix.md",
            "'a-file/matrix.md' cannot be created: {root}/a-file is not a directory",
        ),
        (
            "installperm_divergences = pip",
            "'pip' must read 'INSTALLER SCENARIO: reason'",
        ),
        ("installperm_scenarios = nope", "'{root}/nope' is not a directory of scenario files"),
        ("installperm = maybe", "invalid truth value 'maybe'; allowed: true or false"),
        ("installperm_python = a-file", "'a-file' is not an executable file"),
        ("installperm_python = out", "'out' is not an executable file"),
    ],
)
def test_a_bad_ini_value_is_one_line_naming_key_file_and_value(
    pytester: pytest.Pytester, ini: str, message: str
) -> None:
    (pytester.path / "out" / "is-a-dir").mkdir(parents=True)
    (pytester.path / "a-file").write_text("")
    key = ini.split(" = ", 1)[0]
    result = _run(pytester, ini)
    message = message.format(root=pytester.path)
    _refused(result, f"ini {key} ({pytester.path / 'tox.ini'}): {message}")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--installperm-backend", "bogus"),
            "--installperm-backend: 'bogus' is not a backend; allowed: auto, chmod, "
            "privdrop, mountns",
        ),
        (
            ("--installperm-uid", "nobodyy"),
            "--installperm-uid: 'nobodyy' is no user on this machine; allowed: a user name "
            "or a uid number other than 0 (root, whom no lock stops)",
        ),
        (
            ("--installperm-basetemp", "nowhere"),
            "--installperm-basetemp: 'nowhere' is not an existing directory",
        ),
        (
            ("--installperm-python", "/no/such/python3"),
            "--installperm-python: '/no/such/python3' is not an executable file",
        ),
        (
            ("--installperm-python", "/bin/sh", "--installperm-python", "/bin/sh"),
            "--installperm-python: '/bin/sh' is given twice",
        ),
        (
            ("-o", "installperm_backend=bogus"),
            "ini installperm_backend (from -o): 'bogus' is not a backend; allowed: auto, "
            "chmod, privdrop, mountns",
        ),
    ],
)
def test_a_bad_option_is_the_same_one_line(
    pytester: pytest.Pytester, args: tuple[str, ...], line: str
) -> None:
    _refused(_run(pytester, "", *args), line)


def test_the_matrix_refuses_a_bad_ini_value_before_collecting(pytester: pytest.Pytester) -> None:
    """The original report: with ``--installperm`` every item vanished from the JSON."""
    result = _run(
        pytester, "installperm_backend = bogus", "--installperm", "--installperm-report=r.json"
    )
    _refused(
        result,
        f"ini installperm_backend ({pytester.path / 'tox.ini'}): 'bogus' is not a backend; "
        "allowed: auto, chmod, privdrop, mountns",
    )
    assert not (pytester.path / "r.json").exists()


SHOW_OPTIONS = """
    from pytest_installperm.options import check

    def test_show(request):
        print("OPTIONS", check(request.config))
"""


def _options(pytester: pytest.Pytester, ini: str, *args: str) -> str:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_show=textwrap.dedent(SHOW_OPTIONS))
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", *args)
    assert result.ret == 0, result.stdout.str()
    return next(line for line in result.outlines if "OPTIONS Options(" in line)


def test_a_user_name_is_looked_up_as_the_help_says(pytester: pytest.Pytester) -> None:
    nobody = pwd.getpwnam("nobody")
    shown = _options(pytester, "installperm_uid = nobody")
    assert f"uid={nobody.pw_uid}, gid={nobody.pw_gid}," in shown
    shown = _options(pytester, "", "--installperm-uid", "nobody")
    assert f"uid={nobody.pw_uid}, gid={nobody.pw_gid}," in shown


def test_a_uid_number_is_taken_as_it_is(pytester: pytest.Pytester) -> None:
    assert "uid=4321, gid=4321," in _options(pytester, "installperm_uid = 4321")


def test_the_command_line_wins_over_the_ini_file(pytester: pytest.Pytester) -> None:
    shown = _options(pytester, "installperm_backend = privdrop", "--installperm-backend=chmod")
    assert "backend='chmod'" in shown
    assert "backend='privdrop'" in _options(pytester, "installperm_backend = privdrop")


def test_paths_are_absolute_from_where_pytest_was_started(pytester: pytest.Pytester) -> None:
    shown = _options(pytester, "installperm_report = reports/r.json", "--installperm-markdown=m.md")
    assert f"report={Path(pytester.path, 'reports', 'r.json')!r}" in shown
    assert f"markdown={Path(pytester.path, 'm.md')!r}" in shown


def test_divergences_are_parsed_once(pytester: pytest.Pytester) -> None:
    shown = _options(
        pytester, "installperm_divergences =\n    uv user-fallback: uv has no user scheme"
    )
    assert "divergences={('uv', 'user-fallback'): 'uv has no user scheme'}" in shown


def test_option_reads_the_command_line_then_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ninstallperm_report = from-ini.json\n")
    config = pytester.parseconfig()
    assert option(config, "installperm_report") == "from-ini.json"
    config = pytester.parseconfig("--installperm-report=cli.json")
    assert option(config, "installperm_report") == "cli.json"


def test_the_checked_options_are_kept_frozen_in_the_stash(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_installperm.options import OPTIONS_KEY

        def pytest_sessionstart(session):
            print("STASHED", type(session.config.stash[OPTIONS_KEY]).__name__)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.stdout.fnmatch_lines(["STASHED Options"])
    with pytest.raises(AttributeError):
        Options().backend = "chmod"  # type: ignore[misc]
    assert OPTIONS_KEY is not None


def test_an_unwritable_report_directory_is_refused_at_start(unprivileged) -> None:
    """As a normal user (root may write any directory, so this is the non-root path)."""
    inner = """
        def test_refused(pytester):
            locked = pytester.path / "locked"
            locked.mkdir()
            locked.chmod(0o555)
            pytester.makepyfile(test_x="def test_x():\\n    pass\\n")
            report = "--installperm-report=locked/r.json"
            result = pytester.runpytest("-p", "no:cacheprovider", report)
            assert result.ret == 4
            assert [e for e in result.errlines if e.strip()] == [
                f"ERROR: --installperm-report: 'locked/r.json' cannot be created: {locked} "
                "is not writable"
            ]
    """
    unprivileged.runpytest(inner).assert_outcomes(passed=1)


def test_base_interpreters_are_kept_in_order_as_given(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_installperm.options import check

        def pytest_configure(config):
            print("pythons", [str(p) for p in check(config).pythons])
        """
    )
    result = pytester.runpytest(
        "-s", "--installperm-python", "/bin/sh", "--installperm-python", "/bin/true", "--co"
    )
    result.stdout.fnmatch_lines(["pythons ['/bin/sh', '/bin/true']"])
