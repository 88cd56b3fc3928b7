"""`python -m node.demo` runs the main scenario."""

from node.demo.scenario import main

raise SystemExit(main())
