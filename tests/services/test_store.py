"""Services storage on SQLite and PostgreSQL: a service and its replicas stored together, pinned
weights in one transaction, replicas forgotten, the service deleted with its replicas."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from node.services import store

VALUES = {
    "name": "echo",
    "consumer": "alice",
    "spec": "{}",
    "replicas": 2,
    "max_replicas": 3,
    "scale_in_flight": 4.0,
    "scale_window_s": 30.0,
    "health_path": "/healthz",
    "created_ms": 1000,
    "updated_ms": 1000,
}


def test_services_and_replicas_round_trip(engine: Engine) -> None:
    """Everything written reads back the same, on both backends."""
    created, service = store.insert_service(engine, VALUES, ["a.r1", "a.r2"])
    assert created
    again, same = store.insert_service(engine, {**VALUES, "replicas": 1}, ["a.r9"])
    assert not again
    assert same == service
    assert store.get_service(engine, "echo") == service
    assert [r.id for r in store.replicas_of(engine, "echo")] == ["a.r1", "a.r2"]
    assert store.add_replica(engine, "echo", "a.r3", 2000)
    assert not store.add_replica(engine, "gone", "a.r4", 2000)
    store.pin(engine, "echo", {"a.r1": 300, "a.r2": 0}, 3000)
    weights = {r.id: r.weight for r in store.replicas_of(engine, "echo")}
    assert weights == {"a.r1": 300, "a.r2": 0, "a.r3": None}
    store.pin(engine, "echo", {"a.r1": None}, 3001)
    assert store.replicas_of(engine, "echo")[0].effective_weight == 100
    assert store.set_replicas(engine, "echo", 3, 4000)
    stored = store.get_service(engine, "echo")
    assert stored is not None
    assert (stored.replicas, stored.updated_ms) == (3, 4000)
    store.remove_replica(engine, "a.r2")
    assert sorted(r.id for r in store.all_replicas(engine)) == ["a.r1", "a.r3"]
    assert [s.name for s in store.list_services(engine, "alice")] == ["echo"]
    assert store.list_services(engine, "bob") == []
    assert store.delete_service(engine, "echo")
    assert not store.delete_service(engine, "echo")
    assert store.all_replicas(engine) == []
