"""Reading many accounts' states at once (a partner's status check asks about up to 1,000): the
answer is the one reading each account alone gives, for known, unknown and mixed names, on SQLite
and PostgreSQL, and across more names than one query takes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from federation import store as fed_store
from node.accounts import federated_store, store
from node.accounts.federated import Interconnect, account_state
from tests.support.federation import service_of
from tests.support.trading import market

NOW = 1_800_000_000_000


def _each(engine: Engine, names: list[str]) -> dict[str, store.AccountRecord]:
    """The reference: one read per account, as the status answer did before."""
    return {name: store.get(engine, "consumer", name) for name in sorted(set(names))}


def test_many_accounts_read_at_once_are_those_read_one_by_one(engine: Engine) -> None:
    """Accounts with rows in each status, accounts without a row, unknown names, duplicates, and
    more names than one query takes read the same in one call as one by one."""
    store.created(engine, "consumer", "alice", "admin", NOW)
    store.verify(engine, "consumer", "alice", "verified", "user:olga", "passport", NOW + 1)
    store.created(engine, "consumer", "bob", "admin", NOW)
    store.change(engine, "consumer", "bob", "suspend", "admin", NOW + 2, "chargeback")
    store.created(engine, "consumer", "carol", "admin", NOW)
    store.change(engine, "consumer", "carol", "close", "admin", NOW + 3)
    store.created(engine, "user", "dave", "admin", NOW)  # a user of that name is not a consumer
    store.change(engine, "user", "dave", "suspend", "admin", NOW + 4)
    for i in range(0, 1200, 3):
        store.created(engine, "consumer", f"c{i}", "admin", NOW)
    known, unknown = ["alice", "bob", "carol"], ["zed", "dave", "nobody"]
    many = [f"c{i}" for i in range(1200)]
    for names in (known, unknown, known + unknown, [*unknown, "bob", "bob"], many + known, []):
        assert store.get_many(engine, "consumer", names) == _each(engine, names), names
    read = store.get_many(engine, "consumer", known + unknown)
    assert [read[n].status for n in ("alice", "bob", "carol", "dave")] == [
        "active",
        "suspended",
        "closed",
        "active",
    ]
    assert read["alice"].verified_by == "user:olga"
    assert read["zed"] == store.AccountRecord("consumer", "zed")


async def test_the_status_answer_is_unchanged_for_known_unknown_and_mixed_names(tmp_path: Path) -> None:
    """The home node's signed answer to its partner lists exactly the accounts the partner has
    seen, each in the state it has when read alone, in order; names never seen are left out."""
    async with market(tmp_path) as m:
        ctx = m.buyer.ctx
        assert ctx is not None
        assert m.seller.ctx is not None
        engine, partner_name = ctx.engine, m.seller.ctx.name
        partner = fed_store.get_partner(engine, partner_name)
        assert partner is not None
        interconnect = Interconnect(ctx, service_of(m.buyer))
        seen = ["alice", "bob", "carol", "erin"]
        for name in seen:
            federated_store.saw(engine, name, partner_name, NOW)
        store.created(engine, "consumer", "alice", "admin", NOW)
        store.created(engine, "consumer", "bob", "admin", NOW)
        store.change(engine, "consumer", "bob", "suspend", "admin", NOW + 1)
        store.begin_close(engine, "carol", "admin", NOW + 2)  # stated suspended while being closed
        store.created(engine, "consumer", "frank", "admin", NOW)  # not seen by the partner
        for asked in (seen, ["frank", "nobody"], ["nobody", "carol", "frank", "alice", "erin"]):
            answer = await interconnect.answer_statuses(partner, asked)
            expected = [
                account_state(store.get(engine, "consumer", n)).to_json()
                for n in sorted(set(asked) & set(seen))
            ]
            assert answer["accounts"] == expected, asked
        answer = await interconnect.answer_statuses(partner, seen)
        assert [a["status"] for a in answer["accounts"]] == ["active", "suspended", "suspended", "active"]
