"""Federation state shared by replicas, at the storage level on both backends (SQLite file and
PostgreSQL schema): seen nonces and trade claims decided by the database, also under concurrent
writers, with expiry and purge; and the pure rules beside them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from federation import claim_states, claims, nonces, store
from federation.catalog import CatalogHead
from federation.errors import AuthError, ConflictError, RateLimitedError
from federation.issuing import reusable, source_version
from tests.federation.test_store import partner

KID = "ed25519:abcdefghijklmnop"
SHA = "a" * 64


def race(workers: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run `fn(i)` in `workers` threads released at once; return each result or raised exception."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = fn(index)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_nonce_is_claimed_once_until_it_expires(engine: Engine) -> None:
    """A nonce is accepted once; a repeat is refused while it is valid, accepted again after expiry, and
    purge removes only expired rows."""
    assert nonces.claim_nonce(engine, KID, "nonce-0001", 200, 100)
    assert not nonces.claim_nonce(engine, KID, "nonce-0001", 260, 150)
    assert not nonces.claim_nonce(engine, KID, "nonce-0001", 260, 200)  # valid through its last second
    assert nonces.claim_nonce(engine, "ed25519:otherkeyotherkey", "nonce-0001", 200, 150)  # per key
    assert nonces.claim_nonce(engine, KID, "nonce-0002", 400, 150)
    assert nonces.claim_nonce(engine, KID, "nonce-0001", 500, 201)  # expired: a new signature may reuse it
    assert nonces.purge_expired(engine, 450) == 2
    assert nonces.count_seen(engine) == 1
    assert not nonces.claim_nonce(engine, KID, "nonce-0001", 600, 450)


def test_concurrent_claims_of_one_nonce_admit_exactly_one(engine: Engine) -> None:
    """Eight writers claiming the same nonce at once (as replicas would): exactly one wins."""
    results = race(8, lambda _i: nonces.claim_nonce(engine, KID, "same-nonce", 10**10, 1))
    assert sorted(results) == [False] * 7 + [True]


def test_recent_nonces_only_remember() -> None:
    """The front cache reports a nonce seen until its expiry and forgets (never admits) when full."""
    recent = nonces.RecentNonces(max_entries=4)
    recent.add(KID, "n-1", 100, 0)
    assert recent.seen(KID, "n-1", 100)
    assert not recent.seen(KID, "n-1", 101)
    assert not recent.seen(KID, "n-2", 0)
    for index in range(2, 10):
        recent.add(KID, f"n-{index}", 1000, 0)
    assert len(recent) <= 4
    assert recent.seen(KID, "n-9", 0)


def test_claim_transition_table() -> None:
    """The claim table allows exactly the moves it lists; finishing a free trade is refused."""
    assert claim_states.transition("free", "claim") == "in_progress"
    assert claim_states.transition("in_progress", "claim") == "refused"
    assert claim_states.transition("answered", "claim") == "answered"
    assert claim_states.transition("free", "answer") == "answered"
    assert claim_states.transition("lapsed", "answer") == "answered"
    with pytest.raises(ConflictError):
        claim_states.transition("in_progress", "answer")
    with pytest.raises(ConflictError):
        claim_states.transition("free", "finish")
    with pytest.raises(ConflictError):
        claim_states.transition("answered", "release")


def test_trade_claims_limit_lapse_and_answers(engine: Engine) -> None:
    """Claims count toward the partner's limit until answered, released or lapsed; a lapsed claim may be
    taken over; the first stored answer stands; other content under a trade id is a conflict."""
    store.add_partner(engine, partner("mallory"), 1)

    def claim(trade_id: str, holder: str, now_ts: int, sha: str = SHA, limit: int = 1) -> Any:
        return claims.claim_trade(engine, "mallory", trade_id, sha, holder, now_ts, 30, limit)

    assert claim("t-1", "r1", 100) is None
    with pytest.raises(RateLimitedError) as busy:
        claim("t-2", "r2", 110)
    assert busy.value.code == "rate_limited"
    with pytest.raises(RateLimitedError) as running:
        claim("t-1", "r2", 110)
    assert running.value.code == "trade_in_progress"
    with pytest.raises(ConflictError):
        claim("t-1", "r2", 110, sha="b" * 64)
    assert claim("t-2", "r2", 110, limit=2) is None
    assert claims.in_progress(engine, "mallory", 110) == ["t-1", "t-2"]
    claims.release_claim(engine, "mallory", "t-2", "r2")
    assert claims.renew_claim(engine, "mallory", "t-1", "r1", 140)
    assert not claims.renew_claim(engine, "mallory", "t-1", "someone-else", 500)
    # r1 dies: its claim lapses after 140 and r2 takes the trade over.
    assert claim("t-1", "r2", 141) is None
    assert not claims.renew_claim(engine, "mallory", "t-1", "r1", 200)
    assert claims.finish_trade(engine, "mallory", "t-1", SHA, "r2", 201, b'{"by":"r2"}', 150) == (
        201,
        b'{"by":"r2"}',
    )
    # r1 comes back and finishes late: the first answer stands.
    assert claims.finish_trade(engine, "mallory", "t-1", SHA, "r1", 500, b'{"by":"r1"}', 151) == (
        201,
        b'{"by":"r2"}',
    )
    stored = claim("t-1", "r3", 152)
    assert (stored["status"], bytes(stored["response"])) == (201, b'{"by":"r2"}')
    with pytest.raises(ConflictError):
        claim("t-1", "r3", 152, sha="b" * 64)
    assert claims.in_progress(engine, "mallory", 152) == []
    assert claim("t-3", "r3", 160) is None
    assert claims.purge_lapsed(engine, 300) == 1
    with pytest.raises(AuthError):
        claims.claim_trade(engine, "nobody", "t-1", SHA, "r1", 100, 30, 1)


def test_concurrent_claims_respect_the_limit(engine: Engine) -> None:
    """Eight writers claiming different trades of one partner at once, limit 2: exactly two win."""
    store.add_partner(engine, partner("mallory"), 1)
    results = race(8, lambda i: claims.claim_trade(engine, "mallory", f"t-{i}", SHA, f"r{i}", 100, 30, 2))
    assert sum(result is None for result in results) == 2
    assert all(result is None or isinstance(result, RateLimitedError) for result in results), results
    assert len(claims.in_progress(engine, "mallory", 100)) == 2


def test_catalog_reuse_rule() -> None:
    """A stored catalog is served again only with the same content and under half its validity used."""
    head = CatalogHead(3, "s" * 64, 1000, 4600)
    assert reusable(head, "c" * 64, "c" * 64, 2000, 3600)
    assert not reusable(head, "c" * 64, "d" * 64, 2000, 3600)
    assert not reusable(head, "c" * 64, "c" * 64, 2800, 3600)


def test_source_version_is_optional() -> None:
    """An offer source declares its content version through `content_version()`; a plain one has none."""

    async def plain() -> list[dict[str, Any]]:
        return []

    class Versioned:
        async def __call__(self) -> list[dict[str, Any]]:
            return []

        def content_version(self) -> str:
            return "v7"

    assert source_version(plain) is None
    assert source_version(Versioned()) == "v7"


def test_writes_ride_with_the_claim_and_with_the_answer(engine: Engine) -> None:
    """A write given with a claim is made only when the claim is taken (not on a refusal or a stored
    answer); writes given with the answer are made in its transaction, and one that fails leaves
    neither the answer stored nor the claim ended."""
    store.add_partner(engine, partner("mallory"), 1)

    def marking(name: str) -> claim_states.ClaimWrite:
        return lambda conn: nonces.claim_nonce_in(conn, KID, name, 10**10, 1)

    def marked() -> int:
        return nonces.count_seen(engine)

    def claim(trade_id: str, holder: str, mark: str, sha: str = SHA) -> Any:
        return claims.claim_trade(engine, "mallory", trade_id, sha, holder, 100, 30, 1, None, marking(mark))

    assert claim("t-1", "r1", "with-claim-1") is None
    assert marked() == 1
    with pytest.raises(RateLimitedError):
        claim("t-2", "r2", "busy")
    with pytest.raises(RateLimitedError):
        claim("t-1", "r2", "running")
    with pytest.raises(ConflictError):
        claim("t-1", "r2", "other-content", sha="b" * 64)
    assert marked() == 1

    def failing(_conn: Any) -> None:
        raise RuntimeError("the node's write failed")

    with pytest.raises(RuntimeError):
        claims.finish_trade(engine, "mallory", "t-1", SHA, "r1", 201, b"{}", 110, [marking("lost"), failing])
    assert marked() == 1
    assert claims.in_progress(engine, "mallory", 110) == ["t-1"]
    assert store.get_trade(engine, "mallory", "t-1") is None
    assert claims.finish_trade(engine, "mallory", "t-1", SHA, "r1", 201, b"{}", 110, [marking("answer")]) == (
        201,
        b"{}",
    )
    assert marked() == 2
    stored = claim("t-1", "r3", "answered")
    assert stored["status"] == 201
    assert marked() == 2


def test_a_write_that_answers_stores_the_answer_with_the_claim(engine: Engine) -> None:
    """A claim's write that returns `Answered` stores that answer in the claim's transaction: the
    trade is answered (a repeat gets the stored answer, its hook is not run again), no claim is left
    in progress, and a lapsed claim of another holder ends with it; a write returning anything
    else leaves the claim taken as before."""
    store.add_partner(engine, partner("mallory"), 1)
    ran: list[str] = []

    class Answering(claim_states.AnsweringWrite):
        def __init__(self, name: str, answer: bool = True) -> None:
            self.name, self.answer = name, answer

        def __call__(self, conn: Any) -> claim_states.Answered | None:
            nonces.claim_nonce_in(conn, KID, self.name, 10**10, 1)
            if not self.answer:
                return None
            return claim_states.Answered(
                201, f'{{"by":"{self.name}"}}'.encode(), lambda: ran.append(self.name)
            )

    def claim(trade_id: str, holder: str, write: claim_states.ClaimWrite, now: int = 100) -> Any:
        return claims.claim_trade(engine, "mallory", trade_id, SHA, holder, now, 30, 1, None, write)

    answered = claim("t-1", "r1", Answering("one"))
    assert (answered["status"], answered["response"]) == (201, b'{"by":"one"}')
    assert isinstance(answered["answered"], claim_states.Answered)
    assert claims.in_progress(engine, "mallory", 100) == []
    assert nonces.count_seen(engine) == 1
    again = claim("t-1", "r2", Answering("two"))
    assert (again["status"], bytes(again["response"])) == (201, b'{"by":"one"}')
    assert "answered" not in again
    assert nonces.count_seen(engine) == 1  # the write did not run for a stored answer
    assert claim("t-2", "r1", Answering("taken", answer=False)) is None
    assert claims.in_progress(engine, "mallory", 100) == ["t-2"]
    # t-2's claim lapses (ttl 30); another holder's answering write ends it with the answer.
    lapsed = claim("t-2", "r3", Answering("after-lapse"), now=200)
    assert lapsed["response"] == b'{"by":"after-lapse"}'
    assert claims.in_progress(engine, "mallory", 100) == []
    assert store.get_trade(engine, "mallory", "t-2") is not None
    assert ran == []  # the frame runs the hook once the transaction committed, not `claim_trade`


@pytest.mark.parametrize(
    "limit", [9, 3, 2], ids=["written-together", "all-claimed", "limit-reached-mid-batch"]
)
def test_a_batch_read_at_once_claims_as_trade_by_trade(engine: Engine, limit: int) -> None:
    """`claim_trades` reads a batch's answers, claims and running count at once; the same batch
    claimed trade by trade (each in a savepoint, reading its own) gives the same results and leaves
    the same rows: a stored answer, a lapsed claim answered, new trades claimed or answered, and
    (limit 2) the partner's limit reached by the batch's own claim. With room under the limit for
    every trade (9), the writes run in one `write_together` call; else (3: the batch could reach
    the limit) one by one, as their claims decide."""
    together: list[int] = []

    class Write(claim_states.AnsweringWrite):
        def __init__(self, answer: bool) -> None:
            self.answer = answer

        def __call__(self, _conn: Any) -> claim_states.Answered | None:
            return claim_states.Answered(201, b'{"ok":1}') if self.answer else None

        @classmethod
        def write_together(cls, conn: Any, writes: Sequence[Write]) -> list[claim_states.Answered | None]:
            together.append(len(writes))
            return [write(conn) for write in writes]

    batch = [
        claims.BatchClaim("t-answered", SHA, Write(True)),
        claims.BatchClaim("t-lapsed", SHA, Write(True)),
        claims.BatchClaim("t-new1", SHA, Write(False)),
        claims.BatchClaim("t-new2", SHA, Write(True)),
        claims.BatchClaim("t-new3", SHA, Write(False)),
    ]
    outcomes: dict[str, tuple[list[Any], list[str], list[bool]]] = {}
    for name in ("mallory", "trent"):
        store.add_partner(engine, partner(name), 1)
        claims.claim_trade(engine, name, "t-answered", SHA, "r0", 100, 30, 9, None, Write(True))
        assert claims.claim_trade(engine, name, "t-lapsed", SHA, "r0", 100, 30, 9) is None
        assert claims.claim_trade(engine, name, "t-other", SHA, "r0", 190, 30, 9) is None
    read_at_once = claims.claim_trades(engine, "mallory", batch, "r1", 200, 30, limit)
    assert together == ([4] if limit == 9 else [])  # the answered trade's write does not run
    one_by_one = claims._claim_together(engine, "trent", batch, "r1", 200, 30, limit, None, isolated=True)
    for name, got in (("mallory", read_at_once), ("trent", one_by_one)):
        outcomes[name] = (
            [
                type(r).__name__ if isinstance(r, Exception) else r and (r["status"], bytes(r["response"]))
                for r in got
            ],
            claims.in_progress(engine, name, 200),
            [store.get_trade(engine, name, t) is not None for t in ("t-lapsed", "t-new1", "t-new2")],
        )
    assert outcomes["mallory"] == outcomes["trent"]
    results, running, answered = outcomes["mallory"]
    ok = (201, b'{"ok":1}')
    if limit in (9, 3):
        assert results == [ok, ok, None, ok, None]
        assert answered == [True, False, True]
        assert running == ["t-new1", "t-new3", "t-other"]
    else:  # t-other and t-new1 in progress: the next trades are refused before their writes
        assert results == [ok, ok, None, "RateLimitedError", "RateLimitedError"]
        assert answered == [True, False, False]
        assert running == ["t-new1", "t-other"]


def test_a_batch_whose_writes_fail_together_is_claimed_trade_by_trade(engine: Engine) -> None:
    """When the batch's writes run together and one of them fails, nothing of that attempt stays:
    the batch is claimed again trade by trade, the failing trade gets its error and the others
    their answers or claims, each written once."""
    calls: list[str] = []

    class Write(claim_states.AnsweringWrite):
        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self, conn: Any) -> claim_states.Answered | None:
            calls.append(self.name)
            nonces.claim_nonce_in(conn, "k1", f"n-{self.name}", 10_000, 100)  # a row of its own
            if self.name == "bad":
                raise RuntimeError("this trade's write fails")
            return claim_states.Answered(201, b'{"ok":1}') if self.name != "claimed" else None

    store.add_partner(engine, partner("mallory"), 1)
    batch = [claims.BatchClaim(t, SHA, Write(t)) for t in ("good", "bad", "claimed")]
    results = claims.claim_trades(engine, "mallory", batch, "r1", 100, 30, 9)
    assert calls == ["good", "bad", "good", "bad", "claimed"]  # together, then one by one
    assert isinstance(results[1], RuntimeError)
    good, claimed = results[0], results[2]
    assert good is not None
    assert not isinstance(good, Exception)
    assert (good["status"], bytes(good["response"])) == (201, b'{"ok":1}')
    assert claimed is None
    assert claims.in_progress(engine, "mallory", 100) == ["claimed"]
    assert store.get_trade(engine, "mallory", "bad") is None
    assert nonces.count_seen(engine) == 2  # good's and claimed's, each once
