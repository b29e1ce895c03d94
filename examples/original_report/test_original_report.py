"""The report that started pytest-installperm, as a downstream test suite.

In a Docker image running as a non-root user, ``uv pip install --system``
failed with ``Permission denied (os error 13)`` on a root-owned site-packages,
while ``pip install`` fell back to ``~/.local``. Run it with::

    pytest examples/original_report

As root, the child runs as ``nobody`` (privdrop); as a normal user, the system
site loses its write bits (chmod). Either way the denial is the kernel's.
"""

from __future__ import annotations

import pytest

FALLBACK = "Defaulting to user installation because normal site-packages is not writeable"


@pytest.fixture
def wheel(make_wheel):
    """A package with a console script, like most tools people install."""
    return make_wheel("demo", "1.0", console_scripts={"demo-cli": "demo:main"})


def test_pip_falls_back_to_the_user_site(installperm, wheel):
    # Docker's python images carry no PEP 668 marker; say so, whatever the base.
    env = installperm.system(externally_managed=False, locked=("system",))
    result = env.pip("install", wheel)
    assert result.returncode == 0, result.describe()
    assert FALLBACK in result.stdout
    result.assert_installed(wheel, scheme="user")
    result.assert_untouched("system")


def test_uv_is_denied_and_leaves_nothing(installperm, wheel):
    env = installperm.system(externally_managed=False, locked=("system",))
    result = env.run(["uv", "pip", "install", "--python", env.python, "--system", wheel])
    assert result.returncode != 0
    assert "Permission denied (os error 13)" in result.stderr
    result.assert_not_installed(wheel)
    result.assert_no_residue()
