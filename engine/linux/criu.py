"""CRIU (Debian's ``criu``): whether it can work on this host.

``criu check`` probes the kernel features a dump and a restore need; where
it fails, its errors name what is missing (a kernel option, a vDSO this
CRIU does not know). runlog's ``checkpoint`` and ``restore`` say so,
rather than let a dump fail half-way.
"""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["problem"]

#: Seconds ``criu check`` may take.
CHECK_TIMEOUT = 30


def problem() -> str | None:
    """``None`` if CRIU can work here; else what is missing, in one line."""
    criu = shutil.which("criu")
    if criu is None:
        return "criu is not installed (Debian's criu package)"
    try:
        out = subprocess.run(
            [criu, "check"],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"criu check: {err}"
    if out.returncode == 0:
        return None
    errors = []
    for line in (out.stderr + out.stdout).splitlines():
        if line.startswith("Error"):
            # "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"
            errors.append(line.partition("): ")[2] or line)
    found = "; ".join(errors) or (out.stderr or out.stdout).strip() or f"exit {out.returncode}"
    version = _version(criu)
    return f"criu check fails ({version}, kernel {os.uname().release}): {found}"


def _version(criu: str) -> str:
    try:
        out = subprocess.run(
            [criu, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "criu"
    for line in out.stdout.splitlines():
        if line.startswith("Version:"):
            return "criu " + line.split(":", 1)[1].strip()
    return "criu"
