"""What the monitor does once create has reported, before the next request:
nothing that holds that request (docs/performance.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.runtime.monitor import main

REPO = Path(__file__).resolve().parent.parent


def test_settling_leaves_the_rest_s_modules_until_it_rests() -> None:
    # In a process of its own: _settle freezes and turns on the collector.
    code = textwrap.dedent(
        """
        import sys
        from engine.runtime.monitor import main
        from engine.settings import Settings

        class Store:
            checkpointed = False
            def checkpoint(self):
                Store.checkpointed = True

        class Server:
            streams = None

        server = Server()
        # The seconds create resolved, not the monitor's environment.
        main._settle(Store(), server, Settings(monitor_rest="7"))
        assert Store.checkpointed
        assert server.rest_with is main._rest
        assert server.lean_after == 7.0, server.lean_after
        loaded = sorted(m for m in ("engine.runtime.monitor.handover", "pickle", "socket")
                        if m in sys.modules)
        print(" ".join(loaded) or "none")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"RUNLOG_MONITOR_LEAN": "off", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["none"], out.stdout


def test_a_rest_that_cannot_be_imported_leaves_the_monitor_awake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None: what the server takes for an exec that failed (it stays as it is).
    monkeypatch.setitem(sys.modules, "engine.runtime.monitor.handover", None)
    assert main._rest(object()) is None  # type: ignore[arg-type]


def test_the_rest_is_the_handover_s(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.runtime.monitor import handover

    seen: list[object] = []
    monkeypatch.setattr(handover, "rest", lambda server: seen.append(server) or "resting")
    server = object()
    assert main._rest(server) == "resting"  # type: ignore[arg-type]
    assert seen == [server]
