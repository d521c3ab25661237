"""``python -m proofs``: run every claim and control, print the table, write reports."""

from .runner import main

raise SystemExit(main())
