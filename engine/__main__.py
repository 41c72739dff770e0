"""``python -m engine``: the same as the ``runlog`` command."""

from engine.cli import main

raise SystemExit(main())
