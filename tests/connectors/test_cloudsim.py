"""The cloud simulator as a real process: both dialects' adapters pass the contract (their instances
run their programs for real); failures are injected."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.cloudsim.alpha_plugin import AlphaPlugin
from connectors.cloudsim.beta_plugin import BetaPlugin, fen_from_yuan
from connectors.contract import ComputePlugin, InstanceSpec, Program
from connectors.errors import (
    ConnectorError,
    InvalidRequest,
    NotFound,
    PlatformError,
    PluginTimeout,
    Unauthorized,
)
from connectors.host import HostSettings, PluginHost
from connectors.pools.local import COUNTER_PROGRAM
from connectors.testing import ComputePluginConformance
from tests.support.polling import eventually
from tests.support.sims import BIN, CONFIGS, SimProcess, cloudsim

PROGRAM = Program(command=[sys.executable, str(COUNTER_PROGRAM)], env={"A": "1"})


@pytest.fixture(name="program")
def fixture_program() -> Program:
    """The counter program: the simulator runs it and checkpoints it through its protocol."""
    return PROGRAM


# Every plugin a test makes, closed at its end by `close_plugins` even if the test failed first: a
# session left open is collected later and its ResourceWarning fails whichever test runs then.
OPENED: list[AlphaPlugin | BetaPlugin] = []


@pytest.fixture(autouse=True)
async def close_plugins() -> AsyncIterator[None]:
    """Close the plugins the test made (closing twice is harmless)."""
    yield
    while OPENED:
        await OPENED.pop().close()


def alpha(sim: SimProcess, **overrides: str) -> AlphaPlugin:
    options = {
        "url": sim.url,
        "access_key": "AK-alpha-demo",
        "secret_key": "alpha-demo-secret",
        "poll_interval_s": "0.02",
    }
    plugin: AlphaPlugin = AlphaPlugin.from_options("alpha-pool", {**options, **overrides})  # type: ignore[assignment]
    OPENED.append(plugin)
    return plugin


def beta(sim: SimProcess, **overrides: str) -> BetaPlugin:
    options = {
        "url": sim.url,
        "access_key": "AK-beta-demo",
        "secret_key": "beta-demo-secret",
        "poll_interval_s": "0.02",
    }
    plugin: BetaPlugin = BetaPlugin.from_options("beta-pool", {**options, **overrides})  # type: ignore[assignment]
    OPENED.append(plugin)
    return plugin


async def set_faults(sim: SimProcess, **faults: object) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{sim.url}/_sim/faults", json=faults) as response,
    ):
        assert response.status == 200, await response.text()


class TestAlphaConformance(ComputePluginConformance):
    """The alpha-dialect adapter passes the compute plugin contract against a live simulator."""

    @pytest.fixture(name="plugin")
    async def fixture_plugin(self, alpha_sim: SimProcess) -> AsyncIterator[ComputePlugin]:
        plugin = alpha(alpha_sim)
        await plugin.start()
        yield plugin
        await plugin.close()


class TestBetaConformance(ComputePluginConformance):
    """The beta-dialect adapter passes the compute plugin contract against a live simulator."""

    @pytest.fixture(name="plugin")
    async def fixture_plugin(self, beta_sim: SimProcess) -> AsyncIterator[ComputePlugin]:
        plugin = beta(beta_sim)
        await plugin.start()
        yield plugin
        await plugin.close()


async def test_dialects_differ_on_the_wire_but_not_behind_the_adapters(
    alpha_sim: SimProcess, beta_sim: SimProcess
) -> None:
    """Raw answers differ in shape and units; both adapters give the same contract types with fen and MiB."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{alpha_sim.url}/alpha/v1/regions") as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "Unauthenticated"
        async with session.post(
            f"{beta_sim.url}/beta/api", json={}, headers={"X-Action": "DescribeZones"}
        ) as response:
            assert response.status == 200
            assert (await response.json())["Response"]["Error"]["Code"] == "AuthFailure"
    a, b = alpha(alpha_sim), beta(beta_sim)
    data_a, data_b = await a.data_source(), await b.data_source()
    await a.close()
    await b.close()
    assert {p.minor_per_hour for p in data_a.prices} >= {22400}
    assert {p.minor_per_hour for p in data_b.prices} >= {15800}  # shown as "158" yuan on the wire
    assert {f.memory_mib for f in data_b.flavors} >= {1572864}  # shown as 1536 GiB on the wire
    assert {f.chip_model for f in data_b.flavors} == {"huawei-ascend-910b", "nvidia-h20", "cambricon-mlu370"}


async def test_alpha_pagination_walks_every_page(alpha_sim: SimProcess) -> None:
    """With page size 1 the API answers page tokens, and the pages together hold every flavor."""
    plugin = alpha(alpha_sim)
    await plugin.ensure_account()
    first = await plugin._call("GET", "flavors?pageSize=1")
    assert len(first["flavors"]) == 1
    assert first["nextPageToken"] == "1"
    assert len((await plugin.data_source()).flavors) == 3
    await plugin.close()


def test_yuan_strings_convert_exactly() -> None:
    """Beta's decimal yuan becomes integer fen without rounding, and fractions of a fen are refused."""
    assert fen_from_yuan("158") == 15800
    assert fen_from_yuan("0.07") == 7
    with pytest.raises(PlatformError):
        fen_from_yuan("0.001")


async def test_wrong_credentials_are_unauthorized(alpha_sim: SimProcess, beta_sim: SimProcess) -> None:
    """Bad keys fail with Unauthorized in both dialects."""
    a, b = alpha(alpha_sim, secret_key="nope"), beta(beta_sim, secret_key="nope")
    with pytest.raises(Unauthorized):
        await a.ensure_account()
    with pytest.raises(Unauthorized):
        await b.ensure_account()
    await a.close()
    await b.close()


async def test_injected_errors_fail_calls_and_change_nothing(beta_sim: SimProcess) -> None:
    """At a 100% error rate creates fail as platform errors and no instance appears."""
    plugin = beta(beta_sim)
    await set_faults(beta_sim, error_rate_permille=1000)
    with pytest.raises(PlatformError, match="simulated random failure"):
        await plugin.create_instance(InstanceSpec(name="x", region_id="gz-a", flavor_id="gpu-h20-8"))
    await set_faults(beta_sim)
    assert await plugin.list_instances() == []
    async with aiohttp.ClientSession() as session, session.get(f"{beta_sim.url}/_sim/stats") as response:
        stats = await response.json()
    assert stats["failed"] >= 1
    assert stats["instances"] == 0
    await plugin.close()


async def test_outage_makes_the_plugin_offline_and_recovery_brings_it_back(alpha_sim: SimProcess) -> None:
    """During a forced outage three failed probes take the plugin offline; afterwards it returns on its own."""
    host = PluginHost(settings=HostSettings(call_timeout_s=2, missed_limit=3))
    from connectors.contract import Health

    hosted = await host.add_entry_point(
        "alpha-pool",
        "cloudsim-alpha",
        {"url": alpha_sim.url, "access_key": "AK-alpha-demo", "secret_key": "alpha-demo-secret"},
    )
    await host.refresh()
    assert host.offers()
    await set_faults(alpha_sim, down=True)
    for _ in range(3):
        await host.check_health()
    assert hosted.state == "offline"
    assert host.offers() == []
    await set_faults(alpha_sim)
    await host.check_health()
    assert host.get("alpha-pool").state == "online"
    assert host.offers()
    assert isinstance(await host.loaded("alpha-pool").health(), Health)
    await host.close()


async def test_latency_beyond_the_call_timeout_is_a_timeout(alpha_sim: SimProcess) -> None:
    """Injected latency longer than the plugin's timeout surfaces as PluginTimeout."""
    # A timeout a loaded machine's ordinary call stays under (0.2 s did not, at load 12), and a
    # latency four times it.
    plugin = alpha(alpha_sim, timeout_s="1.5")
    try:
        await plugin.ensure_account()
        await set_faults(alpha_sim, latency_ms=6000)
        with pytest.raises(PluginTimeout):
            await plugin.data_source()
    finally:
        await set_faults(alpha_sim)
        await plugin.close()


async def test_accounts_do_not_see_each_others_instances(alpha_sim: SimProcess) -> None:
    """An instance id of one account is NotFound for a plugin with other credentials (after a token refresh)."""
    plugin = alpha(alpha_sim)
    created = await plugin.create_instance(
        InstanceSpec(name="mine", region_id="cn-east-2", flavor_id="gpu-l40s-4")
    )
    assert created.state == "stopped"
    plugin._token = "forged"
    assert (await plugin.get_instance(created.id)).id == created.id  # re-authenticates on 401
    with pytest.raises(NotFound):
        await plugin.get_instance("i-999999")
    await plugin.delete_instance(created.id)
    await plugin.close()


async def test_simulated_images_run_on_the_inventory_runtimes(tmp_path: Path) -> None:
    """An inventory's `runtimes` is what both dialects report as capabilities and how an image of a
    mapped framework runs; an unmapped framework is refused at deploy through the dialect's error."""
    runtimes = f'\n[runtimes]\npytorch = ["{sys.executable}"]\n'
    for dialect, make in (("alpha", alpha), ("beta", beta)):
        inventory = tmp_path / f"{dialect}.toml"
        inventory.write_text((CONFIGS / "cloudsim" / f"{dialect}.toml").read_text() + runtimes)
        (tmp_path / dialect).mkdir()
        sim = SimProcess(
            [
                str(BIN / "cpnode-cloudsim"),
                "--inventory",
                str(inventory),
                "--storage-dir",
                str(tmp_path / dialect),
            ]
        )
        sim.start()
        plugin = make(sim)
        try:
            info = await plugin.info()
            assert (info.capabilities.images, info.capabilities.frameworks) == ("mapped", ["pytorch"])
            data = await plugin.data_source()
            spec = InstanceSpec(
                name="img", region_id=data.capacity[0].region_id, flavor_id=data.capacity[0].flavor_id
            )
            instance = await plugin.create_instance(spec)
            with pytest.raises(InvalidRequest, match="maps no local runtime"):
                await plugin.deploy(
                    instance.id, Program(image="tensorflow/tensorflow:2.17.0", framework="tensorflow")
                )
            image = Program(
                image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
                framework="pytorch",
                command=["-c", "print('on the runtime')"],
            )
            await plugin.deploy(instance.id, image)
            await plugin.start_instance(instance.id)

            async def ended(plugin: ComputePlugin = plugin, instance_id: str = instance.id) -> bool:
                return (await plugin.get_instance(instance_id)).state in ("stopped", "failed")

            await eventually(ended, timeout_s=20, what=f"{dialect} run end")
            done = await plugin.get_instance(instance.id)
            assert (done.state, done.exit_code, done.program) == ("stopped", 0, image)
            assert b"on the runtime" in (await plugin.logs(instance.id)).data()
            await plugin.delete_instance(instance.id)
        finally:
            await plugin.close()
            sim.stop()


@pytest.mark.parametrize(
    ("dialect", "region", "quota", "big", "small"),
    [
        ("alpha", "cn-north-1", 448, "gpu-h100-8", "gpu-a100-8"),
        ("beta", "gy-a", 256, "npu-910b-8", "mlu-370-4"),
    ],
)
async def test_a_regions_vcpu_quota_is_shared_by_its_flavors(
    tmp_path: Path, dialect: str, region: str, quota: int, big: str, small: str
) -> None:
    """With a per-region vCPU quota every flavor of the region draws on it: both dialects report it
    as shared capacity with each flavor's vCPUs as its cost, an instance of one flavor lowers the
    free count of the others, and the quota refuses an instance its stock would still allow."""
    sim = cloudsim(dialect, tmp_path)
    inventory = tmp_path / f"{dialect}.toml"
    text = inventory.read_text(encoding="utf-8")
    inventory.write_text(re.sub(r"vcpus = \d+", f"vcpus = {quota}", text), encoding="utf-8")
    sim.start()
    plugin = alpha(sim) if dialect == "alpha" else beta(sim)
    try:

        async def room() -> tuple[int, dict[str, int]]:
            data = await plugin.data_source()
            [shared] = [s for s in data.shared if s.region_id == region]
            assert (shared.unit, shared.total) == ("vcpus", quota)
            cpus = {f.id: f.cpus for f in data.flavors}
            rows = {c.flavor_id: (c.free, c.cost) for c in data.capacity if c.region_id == region}
            assert all(cost == cpus[flavor] for flavor, (_, cost) in rows.items())
            return shared.free, {flavor: free for flavor, (free, _) in rows.items()}

        cpus = {f.id: f.cpus for f in (await plugin.data_source()).flavors}
        left, free = await room()
        assert left == quota
        assert free == {big: quota // cpus[big], small: quota // cpus[small]}
        await plugin.create_instance(InstanceSpec(name="first", region_id=region, flavor_id=big))
        left, free = await room()
        assert left == quota - cpus[big]
        assert free == {big: left // cpus[big], small: left // cpus[small]}
        while free[small]:
            await plugin.create_instance(InstanceSpec(name="more", region_id=region, flavor_id=small))
            left, free = await room()
        assert free[big] == 0
        with pytest.raises(ConnectorError, match="quota"):  # each dialect maps the refusal its own way
            await plugin.create_instance(InstanceSpec(name="over", region_id=region, flavor_id=small))
    finally:
        await plugin.close()
        sim.stop()


async def test_a_start_is_done_only_once_its_program_is_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completing a start awaits the program's launch; a poll answered meanwhile sees the operation
    not done yet (it saw it done with the instance still `stopped`, and the conformance kit failed
    'start must make it running' on a loaded machine), and the start is completed once."""
    from connectors.cloudsim.inventory import load_inventory
    from connectors.cloudsim.state import CloudState
    from connectors.sandbox import Sandbox

    now = [0.0]
    state = CloudState(load_inventory(CONFIGS / "cloudsim" / "alpha.toml"), tmp_path, clock=lambda: now[0])
    stock = next(iter(state._stock.values()))
    instance, _ = state.create("acct", "one", stock.region, stock.flavor)
    now[0] += 3600  # every operation is due from here on
    await state.settle()
    state.deploy("acct", instance.id, PROGRAM)
    launching, launched = asyncio.Event(), asyncio.Event()
    real_start, starts = Sandbox.start, []

    async def slow_start(box: Sandbox, program: Program, *, restore: bool = False) -> Any:
        starts.append(program)
        launching.set()
        await launched.wait()
        return await real_start(box, program, restore=restore)

    monkeypatch.setattr(Sandbox, "start", slow_start)
    op = state.power("acct", instance.id, True)
    now[0] += 3600
    first = asyncio.create_task(state.operation("acct", op.id))
    await launching.wait()
    polled = await state.operation("acct", op.id)  # a second poll while the launch is under way
    assert (polled.done, instance.state) == (False, "stopped")
    launched.set()
    assert (await first).done
    assert (op.done, op.error, instance.state, len(starts)) == (True, None, "running", 1)
    await state.close()
