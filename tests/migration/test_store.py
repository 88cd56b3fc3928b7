"""Migration storage on both backends: a request stored once (the same again is the same migration,
a different one a conflict), moves as compare-and-set with a line of history each, guarded and
unguarded field writes, and the unfinished migrations a driver picks up."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from node.migration import store
from node.migration.errors import MigrationConflict
from node.migration.machine import MigrationTransitionError

REQUEST = {"id": "m1", "source_pool": "a", "source_instance": "i-1", "task_id": None, "bandwidth_mbps": 100}


def test_insert_is_idempotent_and_refuses_a_different_request(engine: Engine) -> None:
    """The same request twice stores one migration; another request under its id is refused."""
    created, first = store.insert_migration(engine, REQUEST, 1000)
    assert created
    assert (first.state, first.version, first.undo, first.checkpoint) == ("planned", 1, [], None)
    again, second = store.insert_migration(engine, REQUEST, 2000)
    assert not again
    assert second == first
    with pytest.raises(MigrationConflict):
        store.insert_migration(engine, {**REQUEST, "source_instance": "i-2"}, 3000)
    assert [m.id for m in store.list_migrations(engine)] == ["m1"]


def test_moves_are_compare_and_set_with_history(engine: Engine) -> None:
    """A move from a state the migration left changes nothing; every move and note is in its history;
    a move the table lacks is refused; resting migrations are not unfinished."""
    store.insert_migration(engine, REQUEST, 1000)
    moved = store.move_migration(engine, "m1", "planned", "provision", 1100, "to b", destination_pool="b")
    assert moved is not None
    assert (moved.state, moved.destination_pool, moved.version, moved.attempts) == (
        "path_provisioning",
        "b",
        2,
        0,
    )
    assert store.move_migration(engine, "m1", "planned", "provision", 1200) is None
    with pytest.raises(MigrationTransitionError):
        store.move_migration(engine, "m1", "path_provisioning", "committed", 1200)
    store.note(engine, "m1", "path_provisioning", 1300, "try 1 failed")
    assert [m.id for m in store.unfinished_migrations(engine)] == ["m1"]
    cancelled = store.move_migration(engine, "m1", "path_provisioning", "cancel", 1400)
    assert cancelled is not None
    assert store.move_migration(engine, "m1", "cancelling", "cancelled", 1500) is not None
    assert store.unfinished_migrations(engine) == []
    lines = store.history(engine, "m1")
    assert [(line["from"], line["event"], line["to"]) for line in lines] == [
        ("", "request", "planned"),
        ("planned", "provision", "path_provisioning"),
        ("path_provisioning", "note", "path_provisioning"),
        ("path_provisioning", "cancel", "cancelling"),
        ("cancelling", "cancelled", "cancelled"),
    ]
    assert [line["detail"] for line in store.history(engine, "m1", after_seq=lines[2]["seq"])] == ["", ""]


def test_guarded_and_unguarded_writes(engine: Engine) -> None:
    """A write guarded by a state the migration left is not made; an unguarded one always is; JSON
    fields come back as written."""
    store.insert_migration(engine, REQUEST, 1000)
    store.move_migration(engine, "m1", "planned", "cancel", 1100)
    assert store.update_migration(engine, "m1", 1200, "planned", progress={"bytes_done": 1}) is None
    path = {"id": "p-1", "hops": ["x", "y"], "bandwidth_mbps": 100}
    written = store.update_migration(engine, "m1", 1300, None, path_id="p-1", path=path, undo=["transfer"])
    assert written is not None
    assert (written.path, written.undo, written.progress, written.version) == (path, ["transfer"], None, 3)
    assert store.update_migration(engine, "missing", 1400, None, attempts=1) is None
