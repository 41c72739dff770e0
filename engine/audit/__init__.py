"""Audit queries over the event log: filters, events across containers, summaries.

This package reads the SQLite event log through the DB-API (``sqlite3``),
never writes it, and is imported only by the commands that query it
(``runlog audit``, ``runlog history``, ``runlog replay``): never on the hot
path. The SQL views people use (``engine.eventlog.schema.VIEWS``) and the
queries here share their SELECTs, so both tell the same story.

Modules: :mod:`~engine.audit.logdb` opens the log and checks its schema;
:mod:`~engine.audit.times` reads and writes times; :mod:`~engine.audit.filters`
turns command-line filters into SQL; :mod:`~engine.audit.query` runs them;
:mod:`~engine.audit.summary` counts; :mod:`~engine.audit.render` prints.
"""
