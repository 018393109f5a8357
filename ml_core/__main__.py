"""``python -m ml_core <command> ...``: see :mod:`ml_core.cli`."""

from ml_core.cli import main

raise SystemExit(main())
