"""256 running containers as one unprivileged user (a real ``useradd``
user, rootless, a freezer cgroup delegated to it), at the kernel's default
limits, with every monitor duty checked for every container: the control
socket, the request spool (client side included), a freezer written by
hand and ``events --follow``, attach for those made with ``--log-path``;
and what create gave up said in its event and on stderr
(``bench/scale.py``, which prints memory and counts per monitor)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_every_duty_of_256_running_containers_of_one_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("useradd and cgroup delegation need root")
    if shutil.which("useradd") is None or shutil.which("newuidmap") is None:
        pytest.fail("useradd and newuidmap are needed: make deps installs passwd and uidmap")
    if not os.path.isdir("/sys/fs/cgroup/freezer") and not os.path.exists(
        "/sys/fs/cgroup/cgroup.controllers"
    ):
        pytest.skip("no freezer hierarchy to delegate on this host")
    import scale

    report = scale.run(int(os.environ.get("RUNLOG_SCALE_USER", "256")), user=True)
    assert not report.failures, "\n".join(report.failures[:20])
