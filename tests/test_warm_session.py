"""What a session learned once is not looked up again for each sandbox.

Every ``system()`` asks the session for the installer programs' directory;
finding them (PATH, each candidate's shebang) is done by the first only:
repeated for each sandbox, it was most of a scenario's cost on a busy machine.
"""

from __future__ import annotations

import shutil

import pytest

from pytest_installperm import InstallPerm
from pytest_installperm import session as session_module
from pytest_installperm.session import Session


def test_programs_are_looked_for_once_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session()
    factory = InstallPerm(session)
    try:
        first = factory.system(externally_managed=False)
        tools = first.world.tool("uv").parent if shutil.which("uv") else None
        factory.close()
        # PATH is where the programs are looked for: reading it means looking again.
        monkeypatch.setattr(session_module, "_search_path", lambda: pytest.fail("looked again"))
        second = factory.system(externally_managed=False)
        assert second.child_env()["PATH"].split(":")[0] == first.child_env()["PATH"].split(":")[0]
        if tools is not None:
            assert second.world.tool("uv").parent == tools
    finally:
        factory.close()
        session.close()
