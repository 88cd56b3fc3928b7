"""`python -m node` is the same as the `cpnode` command."""

from node.cli.main import main

raise SystemExit(main())
