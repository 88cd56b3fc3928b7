"""The pure steering core: scores, the near set, weighted round robin, scale-out, endpoint lines."""

from __future__ import annotations

from collections import Counter

import pytest

from node.network.view import NetworkView, ViewLink
from node.services.errors import ServiceInputError
from node.services.network import ViewLatencies
from node.services.records import Replica, check_weight, check_weights, endpoint_in
from node.services.scaling import ScaleWatch, load_per_replica
from node.services.steering import Candidate, Chain, LatencyTable, SteeringParams, near_set, pick, rank

TABLE = LatencyTable.from_config({"bj/gz": 30.0, "bj/sh": 12.0})
PARAMS = SteeringParams(load_ms_per_request=2.0, unknown_latency_ms=50.0, tolerance_ms=5.0)


def cand(
    rid: str,
    site: str | None,
    in_flight: int = 0,
    weight: int = 100,
    *,
    endpoint: str | None = "http://127.0.0.1:1",
    healthy: bool = True,
    pinned: bool = False,
    problem: str | None = None,
) -> Candidate:
    """A replica as steering sees it: healthy, with an endpoint, unless told otherwise."""
    return Candidate(rid, endpoint, site, healthy, in_flight, weight, pinned, problem)


def test_nearest_replica_ranks_first_with_reasons() -> None:
    """Latency from the user's site orders replicas; each term is explained."""
    ranked = rank([cand("far", "gz"), cand("mid", "sh"), cand("here", "bj")], "bj", TABLE, PARAMS)
    assert [r.candidate.id for r in ranked] == ["here", "mid", "far"]
    assert ranked[0].reasons[0] == "latency 0 ms (same site bj)"
    assert ranked[2].reasons[0] == "latency 30 ms (bj → gz)"
    assert [r.candidate.id for r in near_set(ranked, PARAMS)] == ["here"]


def test_load_adds_to_the_score_until_the_far_replica_shares() -> None:
    """Each request in flight adds load_ms_per_request; within tolerance replicas share traffic."""
    busy = rank([cand("near", "bj", in_flight=10), cand("far", "sh")], "bj", TABLE, PARAMS)
    assert [r.candidate.id for r in busy] == ["far", "near"]  # 12 ms < 20 ms
    even = rank([cand("near", "bj", in_flight=4), cand("far", "sh")], "bj", TABLE, PARAMS)
    assert {r.candidate.id for r in near_set(even, PARAMS)} == {"near", "far"}  # 8 vs 12 ms


def test_unknown_sites_and_paths_count_the_assumed_latency() -> None:
    """No user site, no replica site, or no path: unknown_latency_ms, said so."""
    ranked = rank([cand("a", None), cand("b", "gz")], None, TABLE, PARAMS)
    assert all(r.latency_ms == 50.0 for r in ranked)
    nopath = rank([cand("c", "cd")], "sh", TABLE, PARAMS)
    assert nopath[0].reasons[0] == "latency 50 ms assumed (no path sh → cd)"
    assert Chain((LatencyTable({}), TABLE)).latency_ms("gz", "bj") == 30.0


def test_unhealthy_starting_and_drained_replicas_take_nothing() -> None:
    """Ineligible replicas rank last with the reason; with none eligible the near set is empty."""
    ranked = rank(
        [
            cand("sick", "bj", healthy=False, problem="health check answered 503"),
            cand("new", "bj", endpoint=None),
            cand("drained", "bj", weight=0, pinned=True),
            cand("ok", "gz"),
        ],
        "bj",
        TABLE,
        PARAMS,
    )
    assert ranked[0].candidate.id == "ok"
    reasons = {r.candidate.id: r.reasons[-2:] for r in ranked}
    assert "unhealthy: health check answered 503" in reasons["sick"]
    assert "not serving yet: no endpoint announced" in reasons["new"]
    assert "weight 0 (pinned): drained" in reasons["drained"]
    assert pick(near_set(ranked[1:], PARAMS), {}) is None


def test_weighted_round_robin_follows_weights_smoothly() -> None:
    """Weights 3:1 give exactly 3:1 over every four picks, interleaved."""
    near = near_set(
        rank([cand("a", "bj", weight=300), cand("b", "bj", weight=100)], "bj", TABLE, PARAMS), PARAMS
    )
    counters: dict[str, int] = {}
    picks = [pick(near, counters) for _ in range(8)]
    assert [p.id for p in picks if p] == ["a", "a", "b", "a", "a", "a", "b", "a"]
    assert Counter(p.id for p in picks if p) == {"a": 6, "b": 2}


def test_scale_watch_needs_the_whole_window_over_the_threshold() -> None:
    """Over the threshold for the window (and below max) → add one; a dip restarts the window."""
    watch = ScaleWatch(threshold=2, window_s=10)
    assert not watch.observe(0, 3, 1, 3)
    assert not watch.observe(5, 3, 1, 3)
    assert not watch.observe(6, 1, 1, 3)  # dipped: the window starts again
    assert not watch.observe(7, 3, 1, 3)
    assert watch.observe(17, 3, 1, 3)
    assert not watch.observe(18, 3, 2, 3)  # a new window before the next replica
    assert not watch.observe(100, 9, 3, 3)  # at max_replicas
    assert not ScaleWatch(0, 1).observe(0, 100, 1, 3)  # threshold 0: off
    assert load_per_replica([4, 2]) == 3.0
    assert load_per_replica([]) == 0.0


def test_endpoint_lines_and_weights_are_checked() -> None:
    """Only loopback http endpoints are taken; weights are 0..10000 and not all zero."""
    assert (
        endpoint_in("starting\ncpnode-endpoint http://127.0.0.1:8123/\n", ["127.0.0.1"])
        == "http://127.0.0.1:8123"
    )
    assert endpoint_in("nothing yet\n", ["127.0.0.1"]) is None
    with pytest.raises(ServiceInputError, match="names host"):
        endpoint_in("cpnode-endpoint http://10.0.0.8:80", ["127.0.0.1"])
    with pytest.raises(ServiceInputError, match="is not http"):
        endpoint_in("cpnode-endpoint ftp://127.0.0.1:21", ["127.0.0.1"])
    assert check_weight(None) is None
    assert check_weight(0) == 0
    for bad in (-1, 10_001, 1.5, True, "3"):
        with pytest.raises(ServiceInputError):
            check_weight(bad)
    replicas = [Replica("r1", "s", None, 0), Replica("r2", "s", 0, 0)]
    with pytest.raises(ServiceInputError, match="every replica would have weight 0"):
        check_weights({"r1": 0}, replicas)
    check_weights({"r1": 5}, replicas)


def test_the_network_view_as_a_latency_source() -> None:
    """The view's best-path latency; a site it does not know is no path, not an error; a partner's
    pseudo-site counts only when measured."""
    view = NetworkView(
        sites=("bj", "sh", "gz", "node:b"),
        links=(
            ViewLink("net", "bj-sh", "bj", "sh", 12_000, 100, 100, 1),
            ViewLink("net", "sh-gz", "sh", "gz", 14_000, 100, 100, 1),
            ViewLink("measured", "rtt-b", "bj", "node:b", 3_000, 0, 0, 0),
        ),
    )
    latencies = ViewLatencies(view)
    assert latencies.latency_ms("bj", "gz") == 26.0
    assert latencies.latency_ms("bj", "atlantis") is None
    assert latencies.knows("sh")
    assert not latencies.knows("atlantis")
    assert latencies.partner_site("b") == "node:b"
    assert latencies.partner_site("c") is None
    ranked = rank([cand("far", "gz"), cand("partner", "node:b")], "bj", Chain((TABLE, latencies)), PARAMS)
    assert [r.candidate.id for r in ranked] == ["partner", "far"]
