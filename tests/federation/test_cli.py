"""The operator's commands against real nodes: key rotation partners follow, the deny-list, partner
pinning with URL checks, discovered candidates and fingerprint checks."""

from __future__ import annotations

import time
from pathlib import Path

from federation import store
from federation.keys import fingerprint, parse_public_key
from federation.sync import run_round
from tests.support.cli import CliResult, cpnode
from tests.support.federation import nodes, service_of, trust
from tests.support.polling import eventually


def add_beta(config: str, url: str, key: str, *more: str) -> CliResult:
    """`cpnode partners add beta --url URL --key KEY` on the node of `config`, with `more` options."""
    return cpnode("partners", "add", "beta", "--url", url, "--key", key, *more, "--config", config)


async def test_rotation_is_followed_by_partners(tmp_path: Path) -> None:
    """After `cpnode keys rotate` on a running node, its partner keeps syncing (new key learned through the
    old key's endorsement) and the old key is listed as retired."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (alpha, beta):
        trust(alpha, beta)
        trust(beta, alpha)
        assert [r.outcome for r in await run_round(service_of(alpha), force=True)] == ["ok"]
        config = str(tmp_path / "beta" / "node.toml")
        rotated = cpnode("keys", "rotate", "--config", config, "--json").json()
        shown = cpnode("keys", "show", "--config", config, "--json").json()
        statuses = {key["kid"]: key["status"] for key in shown["keys"]}
        assert statuses == {rotated["key_id"]: "active", rotated["retired_key_id"]: "retired"}
        # beta's running process notices the new key (within ROTATION_CHECK_S, 1 s); its catalog and
        # requests are now signed with it.
        await eventually(lambda: service_of(beta).identity().kid == rotated["key_id"], what="new key in use")
        assert [r.outcome for r in await run_round(service_of(beta), force=True)] == ["ok"]
        # beta's catalog for alpha is unchanged (still verifiable: the old key was valid when it was issued).
        results = await run_round(service_of(alpha), force=True)
        assert [(r.outcome, r.error) for r in results] == [("unchanged", None)]
        assert alpha.ctx is not None
        learned, _ = store.peer_keys(alpha.ctx.engine, "beta")
        assert learned[rotated["key_id"]].status == "active"
        assert learned[rotated["retired_key_id"]].status == "retired"


async def test_deny_list_cuts_a_partner_off(tmp_path: Path) -> None:
    """`cpnode keys deny` on a partner's key makes its requests fail from then on."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (alpha, beta):
        trust(alpha, beta)
        trust(beta, alpha)
        assert beta.ctx is not None
        cpnode(
            "keys",
            "deny",
            beta.ctx.identity.key_id,
            "--config",
            str(tmp_path / "alpha" / "node.toml"),
            "--json",
        ).json()
        results = await run_round(service_of(beta), force=True)
        assert results[0].outcome == "rejected"
        assert "key_denied" in (results[0].error or "")


async def test_partner_commands(tmp_path: Path) -> None:
    """partners add checks URL and key, list shows the partner, remove forgets it; link-local is refused."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (_alpha, beta):
        assert beta.ctx is not None
        config = str(tmp_path / "alpha" / "node.toml")
        key = beta.ctx.identity.public_key
        code, output = add_beta(config, "http://169.254.169.254", key).merged
        assert code != 0
        assert "link-local" in output
        code, output = add_beta(config, beta.url, "ed25519:nope").merged
        assert code == 2
        added = add_beta(config, beta.url, key, "--markup-bp", "500", "--json").json()
        assert added["fingerprint"] == fingerprint(parse_public_key(key))
        assert [row["name"] for row in cpnode("partners", "list", "--config", config, "--json").json()] == [
            "beta"
        ]
        code, output = add_beta(config, beta.url, key).merged
        assert code != 0
        assert "already exists" in output
        cpnode("partners", "remove", "beta", "--config", config, "--json").json()
        assert cpnode("partners", "list", "--config", config, "--json").json() == []


async def test_trust_a_discovered_candidate(tmp_path: Path) -> None:
    """A discovered node is only a candidate; trust needs the matching fingerprint."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (alpha, beta):
        assert alpha.ctx is not None
        assert beta.ctx is not None
        config = str(tmp_path / "alpha" / "node.toml")
        key = beta.ctx.identity.public_key
        store.upsert_discovered(
            alpha.ctx.engine, "beta", beta.url, key, fingerprint(parse_public_key(key)), int(time.time())
        )
        listed = cpnode("partners", "discovered", "--config", config, "--json").json()
        assert [(row["name"], row["trusted"]) for row in listed] == [("beta", False)]
        code, output = cpnode(
            "partners", "trust", "beta", "--fingerprint", "SHA256:wrong", "--config", config
        ).merged
        assert code != 0
        assert "mismatch" in output
        assert store.list_partners(alpha.ctx.engine) == []
        cpnode(
            "partners",
            "trust",
            "beta",
            "--fingerprint",
            beta.ctx.identity.fingerprint,
            "--config",
            config,
            "--json",
        ).json()
        assert [p.source for p in store.list_partners(alpha.ctx.engine)] == ["discovery"]


async def test_partner_update_changes_the_agreement_in_place(tmp_path: Path) -> None:
    """partners update changes only the options given, keeps key and URLs, and refuses bad values."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (_alpha, beta):
        assert beta.ctx is not None
        config = str(tmp_path / "alpha" / "node.toml")
        key = beta.ctx.identity.public_key
        add_beta(config, beta.url, key, "--markup-bp", "500", "--json").json()
        updated = cpnode(
            "partners", "update", "beta", "--credit-limit", "2000000", "--config", config, "--json"
        ).json()
        assert updated["agreement"]["credit_limit"] == 2_000_000
        assert updated["agreement"]["markup_bp"] == 500
        assert updated["urls"] == [beta.url]
        [listed] = cpnode("partners", "list", "--config", config, "--json").json()
        assert listed["agreement"]["credit_limit"] == 2_000_000
        assert listed["fingerprint"] == fingerprint(parse_public_key(key))
        code, output = cpnode("partners", "update", "beta", "--credit-limit", "-5", "--config", config).merged
        assert code == 2, output
        [unchanged] = cpnode("partners", "list", "--config", config, "--json").json()
        assert unchanged["agreement"]["credit_limit"] == 2_000_000
        code, output = cpnode("partners", "update", "gamma", "--markup-bp", "1", "--config", config).merged
        assert code == 1
        assert "no partner called 'gamma'" in output
