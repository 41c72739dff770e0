"""The versions runlog reports: its own, and the runtime-spec range it reads.

Plain constants, so that ``runlog state`` and ``runlog kill`` can import them
without importing the configuration parser.
"""

from __future__ import annotations

__all__ = ["OCI_VERSION", "OCI_VERSION_MIN", "RUNLOG_VERSION"]

RUNLOG_VERSION = "0.1.0"

# The runtime-spec release whose fields runlog reads (runc 1.3 is built
# against the same one). ``runlog spec`` writes it as ``ociVersion``, the
# state carries it, and ``runlog features`` reports it as ``ociVersionMax``.
OCI_VERSION = "1.2.1"

# runc's ``features`` reports 1.0.0 as the oldest config it accepts.
OCI_VERSION_MIN = "1.0.0"
