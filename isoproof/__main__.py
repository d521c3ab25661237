"""``python -m isoproof`` is the ``isoproof`` command."""

from .app.cli import main

raise SystemExit(main())
