"""engine.identity: what an actor carries beyond uid and pid."""

from __future__ import annotations

import os
import subprocess
import sys

from engine.identity import enriched, from_annotations, from_environ
from engine.status import Actor


def test_slurm_context_is_read_from_the_asking_process() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "batch"}
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"  # exec'd
        actor = enriched(Actor(os.getuid(), child.pid, "socket"))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert actor.context == {"slurm_job": "77", "slurm_step": "batch"}
    assert actor.job == "77"
    assert actor.user is not None and actor.uid == os.getuid()


def test_no_scheduler_no_context() -> None:
    assert from_environ({"HOME": "/root"}) == {}
    actor = enriched(Actor(0, None, "spool"), {})
    assert actor.context is None and actor.loginuid is None and actor.user == "root"


def test_podman_is_known_by_its_annotations() -> None:
    assert from_annotations("abc", {"io.container.manager": "libpod"}) == {"podman_id": "abc"}
    named = {"io.container.manager": "libpod", "io.kubernetes.cri-o.ContainerName": "web"}
    assert from_annotations("abc", named) == {"podman_id": "abc", "podman_name": "web"}
    assert from_annotations("abc", {"io.container.manager": "cri-o"}) == {}
