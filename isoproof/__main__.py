"""``python -m isoproof`` is the ``isoproof`` command."""

from .cli import main

raise SystemExit(main())
