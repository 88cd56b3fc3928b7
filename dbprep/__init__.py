"""Hot SQL statements written as SQLAlchemy Core and run on the driver's cursor (`Prepared`).

A package of its own, importing nothing of cpnode's, so that `node`, `federation` and `ledger`
may all use it without importing each other (the dependency rule, docs/development.md)."""

from dbprep.prepared import Prepared, columns, driver_error

__all__ = ["Prepared", "columns", "driver_error"]
