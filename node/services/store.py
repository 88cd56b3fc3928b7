"""Services storage (tables in node.services.tables): services, their replicas and pinned weights.

Creating a service stores it with the ids of its first replicas in one transaction; the tasks are
submitted after (under those ids, so submitting again after a crash finds them). Every change is
one transaction; a replica row goes only once its task was stopped or has ended. The replicas'
health as the API processes last observed it is shared through `service_health` (`Health`): each
process writes what its health round saw when it differs from what is stored (`changed`) and what
its proxy saw at once, and reads what the others saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.db.dialects import dialect_insert
from node.services.records import Replica, Service
from node.services.tables import health_t, replica_from_row, replicas_t, service_from_row, services_t


def insert_service(engine: Engine, values: dict[str, Any], replica_ids: list[str]) -> tuple[bool, Service]:
    """Store a new service and its first replicas; (False, the stored one) when the name exists."""
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(services_t).where(services_t.c.name == values["name"])).first()
        if row is not None:
            return False, service_from_row(row)
        conn.execute(sa.insert(services_t).values(**values))
        for replica_id in replica_ids:
            conn.execute(
                sa.insert(replicas_t).values(
                    id=replica_id, service=values["name"], weight=None, created_ms=values["created_ms"]
                )
            )
        return True, Service(**values)


def get_service(engine: Engine, name: str) -> Service | None:
    """One service, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(services_t).where(services_t.c.name == name)).first()
    return None if row is None else service_from_row(row)


def list_services(engine: Engine, consumer: str | None = None) -> list[Service]:
    """Every service (or one consumer's), by name."""
    query = sa.select(services_t).order_by(services_t.c.name)
    if consumer is not None:
        query = query.where(services_t.c.consumer == consumer)
    with engine.connect() as conn:
        return [service_from_row(row) for row in conn.execute(query)]


def replicas_of(engine: Engine, name: str) -> list[Replica]:
    """A service's replicas, oldest first."""
    query = (
        sa.select(replicas_t)
        .where(replicas_t.c.service == name)
        .order_by(replicas_t.c.created_ms, replicas_t.c.id)
    )
    with engine.connect() as conn:
        return [replica_from_row(row) for row in conn.execute(query)]


def all_replicas(engine: Engine) -> list[Replica]:
    """Every replica of every service."""
    with engine.connect() as conn:
        return [replica_from_row(row) for row in conn.execute(sa.select(replicas_t))]


def set_replicas(engine: Engine, name: str, replicas: int, now_ms: int) -> bool:
    """Set the wanted replica count (False if the service is gone)."""
    with write_transaction(engine) as conn:
        done = conn.execute(
            sa.update(services_t)
            .where(services_t.c.name == name)
            .values(replicas=replicas, updated_ms=now_ms)
        )
    return bool(done.rowcount)


def add_replica(engine: Engine, name: str, replica_id: str, now_ms: int) -> bool:
    """Record a new replica (False if the service is gone)."""
    with write_transaction(engine) as conn:
        if conn.execute(sa.select(services_t.c.name).where(services_t.c.name == name)).first() is None:
            return False
        conn.execute(
            sa.insert(replicas_t).values(id=replica_id, service=name, weight=None, created_ms=now_ms)
        )
    return True


def pin(engine: Engine, name: str, weights: dict[str, int | None], now_ms: int) -> None:
    """Pin (or unpin, None) the weights of replicas of a service, all in one transaction."""
    with write_transaction(engine) as conn:
        for replica_id, weight in weights.items():
            conn.execute(
                sa.update(replicas_t)
                .where(replicas_t.c.id == replica_id, replicas_t.c.service == name)
                .values(weight=weight)
            )
        conn.execute(sa.update(services_t).where(services_t.c.name == name).values(updated_ms=now_ms))


def remove_replica(engine: Engine, replica_id: str) -> None:
    """Forget a replica (its task was stopped or ended)."""
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(replicas_t).where(replicas_t.c.id == replica_id))
        conn.execute(sa.delete(health_t).where(health_t.c.replica == replica_id))


def delete_service(engine: Engine, name: str) -> bool:
    """Forget a service (its replicas' tasks were stopped); False if it was gone."""
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(replicas_t).where(replicas_t.c.service == name))
        conn.execute(sa.delete(health_t).where(health_t.c.service == name))
        done = conn.execute(sa.delete(services_t).where(services_t.c.name == name))
    return bool(done.rowcount)


@dataclass(frozen=True)
class Health:
    """The latest health observation of a replica by any API process (table service_health)."""

    replica: str
    service: str
    healthy: bool
    problem: str | None
    endpoint: str | None
    site: str | None
    observed_ms: int
    observer: str


def changed(stored: Health | None, seen: Health) -> bool:
    """Whether `seen` says something `stored` does not (health, problem, endpoint, site), so it is
    worth writing; when and by whom it was seen do not count."""
    if stored is None:
        return True
    return (stored.service, stored.healthy, stored.problem, stored.endpoint, stored.site) != (
        seen.service,
        seen.healthy,
        seen.problem,
        seen.endpoint,
        seen.site,
    )


def save_health(engine: Engine, observations: list[Health]) -> None:
    """Store observations, each only over an older one of its replica (the latest one wins)."""
    if not observations:
        return
    with write_transaction(engine) as conn:
        for seen in observations:
            values = asdict(seen)
            stmt = dialect_insert(conn, health_t).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[health_t.c.replica],
                    set_={k: v for k, v in values.items() if k != "replica"},
                    where=health_t.c.observed_ms <= seen.observed_ms,
                )
            )


def load_health(engine: Engine) -> dict[str, Health]:
    """The stored observation of every replica, by replica id (those of removed replicas dropped)."""
    query = sa.select(health_t).where(health_t.c.replica.in_(sa.select(replicas_t.c.id)))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return {
        row["replica"]: Health(
            row["replica"],
            row["service"],
            bool(row["healthy"]),
            row["problem"],
            row["endpoint"],
            row["site"],
            int(row["observed_ms"]),
            row["observer"],
        )
        for row in rows
    }
