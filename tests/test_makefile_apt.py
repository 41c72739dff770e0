"""The Makefile's apt calls wait for another apt or dpkg's lock."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_apt_get_waits_for_the_dpkg_lock() -> None:
    text = (REPO / "Makefile").read_text()
    assert "APT := apt-get -o DPkg::Lock::Timeout=" in text
    calls = [line for line in text.splitlines() if re.search(r"\bapt-get\b", line)]
    assert calls and all("DPkg::Lock::Timeout" in line for line in calls), calls
    dry = subprocess.run(
        ["make", "-n", "-C", str(REPO), "deps", "DEBS=busybox-static"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "apt-get -o DPkg::Lock::Timeout=600 install -y busybox-static" in dry
