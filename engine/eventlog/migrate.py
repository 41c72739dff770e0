"""Schema migrations with Alembic: upgrade, current revision, new revisions.

Only the rare paths come here (an older database, ``runlog db ...``); the
hot path checks the version with one SELECT (``engine.eventlog.sqlite``).
Run as ``python -m engine.eventlog.migrate revision -m MESSAGE`` to
autogenerate a revision from ``engine.eventlog.schema``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import engine
from engine.eventlog.schema import make_engine

__all__ = ["alembic_config", "current", "head", "migrations_dir", "revisions", "upgrade", "url_for"]


def migrations_dir() -> Path:
    """``migrations/`` of a source checkout, or the copy an installed wheel carries."""
    package = Path(engine.__file__).resolve().parent
    for candidate in (package.parent / "migrations", package / "_migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"runlog's migrations are not installed next to {package}")


def url_for(db: str) -> str:
    """A SQLAlchemy URL for ``db``: a URL is kept, a path becomes sqlite."""
    if "://" in db:
        return db
    if db == ":memory:":
        return "sqlite://"
    return f"sqlite:///{Path(db).resolve()}"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def revisions() -> list[str]:
    """Every revision this runlog knows, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def head() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    rev = script.get_current_head()
    assert rev is not None, "no migrations"
    return rev


def upgrade(url: str, target: str = "head") -> None:
    sa_engine = make_engine(url)
    try:
        with sa_engine.connect() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
            conn.commit()
    finally:
        sa_engine.dispose()


def current(url: str) -> str | None:
    sa_engine = make_engine(url)
    try:
        with sa_engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        sa_engine.dispose()


def _next_rev_id() -> str:
    known = [r for r in revisions() if r.isdigit()]
    return f"{(max(int(r) for r in known) + 1) if known else 1:04d}"


def main(argv: list[str]) -> int:
    """``revision -m MESSAGE``: autogenerate against a scratch database at head."""
    if len(argv) != 3 or argv[0] != "revision" or argv[1] != "-m":
        print("usage: python -m engine.eventlog.migrate revision -m MESSAGE", file=sys.stderr)
        return 2
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        url = url_for(str(Path(tmp) / "scratch.db"))
        known = revisions() if (migrations_dir() / "versions").is_dir() else []
        if known:
            upgrade(url)
        cfg = alembic_config(url)
        command.revision(cfg, message=argv[2], autogenerate=True, rev_id=_next_rev_id())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
