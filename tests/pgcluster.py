"""A throwaway PostgreSQL cluster for the tests: Debian's postgresql-15.

``initdb`` in a temporary directory, run as the unprivileged ``postgres``
user, listening on a unix socket in that directory only (no TCP); stopped
and removed afterwards. Tests that need one take the ``pg_url`` fixture
(tests/conftest.py); where the host has no PostgreSQL or no psycopg they
skip, saying which is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

BIN = Path(os.environ.get("RUNLOG_TEST_PGBIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"


def missing() -> str | None:
    """Why this host cannot run a test cluster, or None."""
    if not (BIN / "initdb").is_file():
        return f"no PostgreSQL server binaries in {BIN} (apt-get install postgresql-15)"
    try:
        pwd.getpwnam(OWNER)
    except KeyError:
        return f"no {OWNER!r} user to run the test cluster as"
    if os.geteuid() != 0:
        return "starting a test cluster as the postgres user needs root"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'runlog[postgres]')"
    return None


class Cluster:
    """One postgres server with a socket in ``self.dir``; ``url(db)`` names a database."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="runlog-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        owner = pwd.getpwnam(OWNER)
        os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self._uid, self._gid = owner.pw_uid, owner.pw_gid
        self.running = False

    def _as_owner(self, *argv: str) -> None:
        def drop() -> None:
            os.setgid(self._gid)
            os.setgroups([])
            os.setuid(self._uid)

        subprocess.run(
            list(argv),
            check=True,
            capture_output=True,
            preexec_fn=drop,
            cwd=self.dir,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
        )

    def init(self) -> None:
        self._as_owner(
            str(BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            OWNER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.dir}' "
            "-c fsync=off -c full_page_writes=off -c max_connections=40"
        )
        self._as_owner(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
            "start",
        )  # fmt: skip
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._as_owner(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def createdb(self, name: str) -> str:
        self._as_owner(str(BIN / "createdb"), "-h", str(self.dir), "-U", OWNER, name)
        return self.url(name)

    def dropdb(self, name: str) -> None:
        self._as_owner(
            str(BIN / "dropdb"), "-h", str(self.dir), "-U", OWNER, "--force", "--if-exists", name
        )

    def url(self, name: str) -> str:
        return f"postgresql://{OWNER}@/{name}?host={self.dir}"

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
