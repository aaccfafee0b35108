"""`python -m migrestore`."""

from migrestore.cli import entry

raise SystemExit(entry())
