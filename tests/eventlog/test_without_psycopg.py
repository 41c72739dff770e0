"""Without psycopg, a PostgreSQL URL is one line naming the extra, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
URL = "postgresql://u:secret@127.0.0.1/runlog"
# psycopg made unimportable, as on a host without the extra.
RUN = "import sys; sys.modules['psycopg'] = None; from engine.cli import main; sys.exit(main())"


@pytest.mark.parametrize(
    "args",
    [
        ("--db", URL, "db", "current"),
        ("--db", URL, "audit"),
        ("--db", URL, "history", "x"),
        ("ship", "--to", URL),
    ],
    ids=lambda a: " ".join(a[2:] if a[0] == "--db" else a[:1]),
)
def test_one_line_naming_the_extra(args: tuple[str, ...], tmp_path: Path) -> None:
    log = tmp_path / "events.db"
    done = subprocess.run(
        [sys.executable, "-c", RUN, "--db", str(log), *args] if args[0] == "ship" else
        [sys.executable, "-c", RUN, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "pip install 'runlog[postgres]'" in done.stderr
    assert "secret" not in done.stderr
