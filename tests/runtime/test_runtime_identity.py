"""Who asked, as every event records it: user, login uid, Slurm's job from
the caller's environment, podman's container id from the annotations it
passes (as podman 4.3 writes them), and the root of the container's life."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

# What podman 4.3 puts in config.json, seen with a runtime that saved it.
PODMAN = {
    "io.container.manager": "libpod",
    "io.kubernetes.cri-o.Created": "2026-12-07T04:19:54.949079055Z",
    "io.kubernetes.cri-o.TTY": "false",
    "io.podman.annotations.autoremove": "TRUE",
    "io.podman.annotations.init": "FALSE",
    "io.podman.annotations.privileged": "FALSE",
    "io.podman.annotations.publish-all": "FALSE",
    "org.opencontainers.image.stopSignal": "15",
}
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "3", "SLURM_JOB_USER": "alice"}


def actors(db: Path, cid: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            'SELECT "trigger", actor_user, actor_loginuid, actor_context, job, root '
            "FROM events WHERE container_id = ? ORDER BY seq",
            (cid,),
        ).fetchall()
    return [dict(r) for r in rows]


@pytest.mark.root
def test_every_event_says_who_from_where(
    runlog: Any, bundle: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)

    def annotate(spec: dict[str, Any]) -> None:
        spec["annotations"] = PODMAN

    path = bundle(["sleep", "30"], annotate)
    cid = "slurm-4242"
    assert runlog("create", "--bundle", str(path), cid).returncode == 0
    assert runlog("start", cid).returncode == 0
    assert runlog("kill", cid, "KILL").returncode == 0
    runlog.wait_status(cid, "stopped")
    assert runlog("delete", cid).returncode == 0
    assert runlog("start", cid).returncode != 0  # refused by the CLI itself
    found = actors(runlog.db, cid)
    asked = [a for a in found if a["trigger"] != "exit"]
    assert [a["trigger"] for a in asked] == ["create", "start", "kill", "delete", "start"]
    for actor in asked:
        context = json.loads(actor["actor_context"])
        assert context["slurm_job"] == "4242" and context["slurm_step"] == "3"
        assert context["slurm_user"] == "alice"
        assert actor["job"] == "4242" and actor["actor_user"] == "root"
        assert actor["root"] == str(runlog.root.resolve())
    for actor in found[:-1]:  # the monitor's events: podman's identity too
        assert json.loads(actor["actor_context"])["podman_id"] == cid
    loginuid = Path("/proc/self/loginuid").read_text().strip()
    expected = None if loginuid == "4294967295" else int(loginuid)
    assert {a["actor_loginuid"] for a in asked} == {expected}
