"""`python -m migrestore`."""

from migrestore.cli import main

raise SystemExit(main())
