"""The fixtures: thin wrappers over the exported classes.

Everything a fixture needs is imported when it is first requested, not when
pytest loads the plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_installperm import options

if TYPE_CHECKING:
    from pytest_installperm.environment import InstallPerm
    from pytest_installperm.fakefs import FakeInstallPerm
    from pytest_installperm.session import Session
    from pytest_installperm.wheels import MakeWheel

SESSION_KEY = pytest.StashKey["Session"]()


def get_session(config: pytest.Config) -> Session:
    """The session state, created on first use and removed at session end."""
    from pytest_installperm.installers.registry import config_registry
    from pytest_installperm.session import Session

    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        settings = options.check(config)
        session = Session(
            backend=settings.backend,
            mode=settings.mode,
            uid=settings.uid,
            gid=settings.gid,
            basetemp=str(settings.basetemp) if settings.basetemp else None,
            installers=config_registry(config).presets(),
            cache_dir=settings.cache_dir,
        )
        config.stash[SESSION_KEY] = session
    return session


def clear_cache(config: pytest.Config) -> None:
    """Remove the kept templates (``--installperm-clear-cache``)."""
    from pytest_installperm.cache import TemplateCache, default_cache_dir

    root = options.check(config).cache_dir or default_cache_dir()
    if root is not None:
        TemplateCache(root).clear()


@pytest.fixture
def installperm(request: pytest.FixtureRequest) -> Iterator[InstallPerm]:
    """Build fake system interpreters and venvs with locked directories.

    ``installperm.system(locked=("system",))`` gives a real, relocated
    interpreter whose system site the child cannot write; ``.run()`` and
    ``.pip()`` run installers there and report where every file went.
    """
    from pytest_installperm.environment import InstallPerm

    factory = InstallPerm(get_session(request.config))
    yield factory
    factory.close()


@pytest.fixture
def make_wheel(request: pytest.FixtureRequest) -> MakeWheel:
    """Build valid wheels: ``make_wheel("demo", "1.0", console_scripts=...)`` -> Path.

    Wheels go into a directory in the session root, which a child running as
    another uid can read (pytest's own basetemp is 0700 when we are root).
    """
    from pytest_installperm.wheels import MakeWheel

    return MakeWheel(get_session(request.config).root.new_dir("wheels-"))


@pytest.fixture
def installperm_fakefs(request: pytest.FixtureRequest) -> Iterator[FakeInstallPerm]:
    """The ``installperm`` world in-process, on pyfakefs: ``installperm_fakefs.system()``.

    Not combinable with pyfakefs's own ``fs`` fixture (one Patcher per process):
    use ``installperm_fakefs.fs``. See docs/fakefs.md for what is emulated.
    """
    from pytest_installperm.fakefs import FakeInstallPerm

    factory = FakeInstallPerm(request.fixturenames)
    yield factory
    factory.close()
