"""``python -m engine``: the same as the ``runlog`` command."""

from engine.quick import main

raise SystemExit(main())
