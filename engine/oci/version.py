"""The versions runlog reports: its own, and the runtime-spec range it reads.

Plain constants, so that ``runlog state`` and ``runlog kill`` can import them
without importing the configuration parser.
"""

from __future__ import annotations

__all__ = ["OCI_VERSION", "OCI_VERSION_MIN", "RUNLOG_VERSION", "commit"]

RUNLOG_VERSION = "0.1.0"

# The runtime-spec release whose fields runlog reads (runc 1.3 is built
# against the same one). ``runlog spec`` writes it as ``ociVersion``, the
# state carries it, and ``runlog features`` reports it as ``ociVersionMax``.
OCI_VERSION = "1.2.1"

# runc's ``features`` reports 1.0.0 as the oldest config it accepts.
OCI_VERSION_MIN = "1.0.0"


def commit() -> str:
    """The git commit of the checkout runlog runs from, read from ``.git``
    without running git; ``unknown`` for an installed package."""
    import os

    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    git = os.path.join(top, ".git")
    try:
        if os.path.isfile(git):  # a worktree: "gitdir: PATH"
            with open(git) as fh:
                git = os.path.join(top, fh.read().strip().removeprefix("gitdir: "))
        with open(os.path.join(git, "HEAD")) as fh:
            head = fh.read().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head.removeprefix("ref: ")
        common = git
        if os.path.isfile(os.path.join(git, "commondir")):
            with open(os.path.join(git, "commondir")) as fh:
                common = os.path.join(git, fh.read().strip())
        for base in (git, common):
            path = os.path.join(base, ref)
            if os.path.isfile(path):
                with open(path) as fh:
                    return fh.read().strip()[:12]
        with open(os.path.join(common, "packed-refs")) as fh:
            for line in fh:
                sha, _, name = line.strip().partition(" ")
                if name == ref:
                    return sha[:12]
    except OSError:
        pass
    return "unknown"
