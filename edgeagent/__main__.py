"""Allow ``python -m edgeagent``."""

from edgeagent.cli import main

raise SystemExit(main())
