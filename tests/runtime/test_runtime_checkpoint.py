"""``checkpoint`` and ``restore``: the machine's, through CRIU, which runlog
does not drive yet - each fails saying what CRIU lacks on this host (or,
where ``criu check`` passes, that runlog does not drive it), recorded."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.linux import criu

pytestmark = [pytest.mark.root]

Bundle = Callable[..., Path]


def _failed(db: Path, cid: str, trigger: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            'SELECT outcome, payload FROM events WHERE container_id = ? AND "trigger" = ?',
            (cid, trigger),
        ).fetchone()
    assert row is not None and row[0] == "failed", row
    doc: dict[str, Any] = json.loads(row[1])
    return doc


def test_checkpoint_and_restore_say_what_criu_lacks(
    runlog: Any, bundle: Bundle, tmp_path: Path
) -> None:
    missing = criu.problem()
    expected = "CRIU cannot work on this host" if missing else "runlog does not drive CRIU"
    b = bundle(["sleep", "60"])
    runlog("run", "-d", "k-1", "-b", str(b), check=True)
    out = runlog("checkpoint", "--image-path", str(tmp_path / "img"), "k-1")
    assert out.returncode == 1 and expected in out.stderr, out.stderr
    if missing:
        assert missing in out.stderr  # criu check's own words: what the kernel lacks
    assert runlog.state("k-1")["status"] == "running"  # nothing happened to it
    payload = _failed(runlog.db, "k-1", "checkpoint")
    assert payload["request"]["image_path"] == str(tmp_path / "img")
    assert expected in payload["error"]
    back = runlog("restore", "-b", str(b), "--image-path", str(tmp_path / "img"), "k-2")
    assert back.returncode == 1 and expected in back.stderr, back.stderr
    assert _failed(runlog.db, "k-2", "restore")["request"]["bundle"] == str(b)
    assert not (runlog.root / "k-2").exists()
    runlog("delete", "--force", "k-1", check=True)


def test_criu_problem_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert criu.problem() == "criu is not installed (Debian's criu package)"
    fake = tmp_path / "criu"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "Version: 9.9"; exit 0; fi\n'
        'echo "Error (criu/cr-check.c:1): Kernel doesn\'t support PTRACE_O_SUSPEND_SECCOMP" >&2\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    found = criu.problem()
    assert found is not None
    assert found.startswith("criu check fails (criu 9.9, kernel ")
    assert found.endswith("Kernel doesn't support PTRACE_O_SUSPEND_SECCOMP")
