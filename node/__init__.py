"""cpnode: the node software of an Internet of computing power.

`node` is the composition root: it reads configuration, opens the database, builds the HTTP
service and the scheduler, and composes `federation`, `connectors` and `ledger`, which never
import `node` or each other.
"""

__version__ = "0.1.0"
