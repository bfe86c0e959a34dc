"""Priority pools with proactive offload (Ascendra): offloads happen when the LP pool would make a request
miss and not when it is idle, migrations keep every request's tokens and every KV block accounted for
(check_invariants), bad flags are one-line errors, and `reproduce ascendra` passes and keeps its direction
under other setups."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.scenarios import get_scenario
from phasewise.sim import Slo, simulate
from phasewise.sim.api import run
from phasewise.sim.deployment import build_deployment, load_deployment
from phasewise.workload import Workload

A100 = "a100-sxm-80gb"


def pools(lp: dict | None = None, hp: dict | None = None, lp_replicas: int = 3, **block) -> object:
    return build_deployment({"model": "meta-llama/Meta-Llama-3-8B", "instances": [
        dict(hardware=A100, engine="ascendra-lp", replicas=lp_replicas, pool="lp", **(lp or {})),
        dict(hardware=A100, engine="ascendra-hp", replicas=1, pool="hp", **(hp or {}))], "priority_pools": block})


def starving_workload(n: int = 400, rate: float = 60.0, seed: int = 0) -> Workload:
    """Mostly short prompts at a high rate, every 20th one long: shortest-prefill-first starves the long ones."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    arrival -= arrival[0]
    prompts = np.where(np.arange(n) % 20 == 7, 6000, rng.integers(100, 800, n))
    return Workload(arrival, prompts, rng.integers(50, 300, n))


def test_lp_starvation_is_offloaded_to_hp():
    res = simulate(pools(), starving_workload(), Slo(1000, 100), check_invariants=True)
    figures = res.policy["priority_pools"]
    assert figures["offloads_waiting"] > 0 and figures["offload_fraction"] > 0
    hp = figures["hp_instances"]
    long_ones = res.prompt_tokens == 6000
    assert np.isin(res.instance[long_ones], hp).mean() >= 0.25  # starved long prompts finish on HP
    assert np.isin(res.instance[~long_ones], hp).mean() < 0.1  # most short ones never leave LP
    assert figures["hp_tbt_violation_fraction"] <= 0.02


def test_no_offload_when_the_pools_are_idle():
    res = simulate(pools(), starving_workload(n=100, rate=1.0), Slo(1000, 100), check_invariants=True)
    figures = res.policy["priority_pools"]
    assert figures["offloaded_requests"] == 0 and figures["hp_requests"] == 0
    assert figures["hp_busy_fraction"] == 0.0
    assert res.attained().all()


@pytest.mark.parametrize("migration", ["transfer", "recompute", "auto"])
def test_decode_migrations_keep_tokens_and_blocks(migration):
    # a huge LP budget makes every iteration prefill-heavy: decodes fall behind a 40 ms TBT SLO and move
    dep = pools(lp=dict(max_num_batched_tokens=8192), migration=migration, slack_margin_ms=50)
    res = simulate(dep, starving_workload(n=300, rate=40.0), Slo(5000, 40), check_invariants=True)
    figures = res.policy["priority_pools"]
    moved = figures["migrations_transfer"] + figures["migrations_recompute"]
    assert moved > 0
    if migration == "transfer":
        assert figures["migrations_recompute"] == 0
    if migration == "recompute":
        assert figures["migrations_transfer"] == 0
    assert np.isfinite(res.finish_s).all()  # nobody lost (and check mode asserts nobody finished twice)


@st.composite
def pool_setups(draw):
    lp = dict(max_num_batched_tokens=draw(st.sampled_from([512, 1024, 8192])),
              memory_fraction=draw(st.sampled_from([0.9, 0.3])))  # a small KV forces preemptions beside migrations
    hp = dict(chunk_size=draw(st.sampled_from([128, 256])), max_num_seqs=draw(st.sampled_from([4, 64])))
    block = dict(migration=draw(st.sampled_from(["auto", "transfer", "recompute"])),
                 slack_margin_ms=draw(st.sampled_from([0.0, 300.0])),
                 check_interval_ms=draw(st.sampled_from([0.0, 100.0])))
    if draw(st.booleans()):
        block["class_slo_ms"] = [(300.0, 30.0), (3000.0, 200.0)]
    return pools(lp, hp, lp_replicas=draw(st.integers(1, 3)), **block)


@st.composite
def small_workloads(draw):
    n = draw(st.integers(5, 80))
    rate = draw(st.sampled_from([5.0, 40.0, 200.0]))
    seed = draw(st.integers(0, 1000))
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    prompts = rng.choice([16, 300, 2000, 7000], n)
    priority = rng.integers(0, 2, n) if draw(st.booleans()) else None
    return Workload(arrival - arrival[0], prompts, rng.integers(1, 400, n), priority)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dep=pool_setups(), work=small_workloads(), tbt_ms=st.sampled_from([20.0, 100.0]))
def test_offloads_and_migrations_conserve_requests_blocks_and_token_order(dep, work, tbt_ms):
    # check mode asserts per request: exact token count, tokens in order across instances, arrival <= schedule
    # <= first token <= finish, finished once; per instance: KV blocks conserved, never above capacity
    res = simulate(dep, work, Slo(500, tbt_ms), check_invariants=True)
    done = np.isfinite(res.finish_s)
    assert done.sum() + res.rejected == len(work)
    figures = res.policy["priority_pools"]
    assert figures["offloaded_requests"] <= len(work)
    on_hp = np.isin(res.instance, figures["hp_instances"])
    assert on_hp.sum() == figures["hp_requests"] <= figures["offloaded_requests"]


def test_flags_build_the_pools_and_bad_values_are_one_line_errors():
    res = run(model="meta-llama/Meta-Llama-3-8B", hardware=A100, replicas=4, scheduler="ascendra", hp_instances=1,
              rate=20, requests=60, isl=512, osl=64, slo_ttft_ms=1000, slo_tpot_ms=100, migration="transfer",
              max_num_batched_tokens=2048)
    assert res.policy["priority_pools"]["lp_instances"] == [0, 1, 2]
    assert res.policy["priority_pools"]["hp_instances"] == [3]
    bad = [(dict(scheduler="fifo"), "--scheduler 'fifo' is not one of plain, ascendra"),
           (dict(hp_instances=1), "--hp-instances needs --scheduler ascendra"),
           (dict(scheduler="ascendra", replicas=2, hp_instances=2), "--hp-instances must be between 1 and"),
           (dict(scheduler="ascendra", replicas=4, migration="teleport"), "--migration 'teleport' is not one of"),
           (dict(scheduler="ascendra", replicas=4, engine="sglang"), "--engine does not apply"),
           (dict(scheduler="ascendra", replicas=4, arch="disagg"), "needs --arch collocated"),
           (dict(scheduler="ascendra", replicas=4, slack_margin_ms=-1.0), "--slack-margin-ms must be >= 0"),
           (dict(scheduler="ascendra", replicas=4), "need SLOs")]
    for flags, message in bad:
        with pytest.raises(PhasewiseError, match=message.replace("(", r"\(")) as info:
            run(rate=5, requests=5, **flags)
        assert "\n" not in str(info.value)


def test_cli_flag_error_is_one_line(run_cli):
    code, _, err = run_cli("simulate", "--scheduler", "ascendra", "--replicas", "4", "--migration", "x",
                           "--rate", "5", "--requests", "5", "--slo-ttft-ms", "1000")
    assert code != 0 and err.count("\n") == 1 and "--migration" in err and "Traceback" not in err


def test_yaml_pools(tmp_path):
    path = tmp_path / "pools.yaml"
    path.write_text("model: meta-llama/Meta-Llama-3-8B\n"
                    "instances:\n"
                    "  - {hardware: a100-sxm-80gb, engine: ascendra-lp, replicas: 3, pool: lp}\n"
                    "  - {hardware: a100-sxm-80gb, engine: ascendra-hp, replicas: 1, pool: hp, chunk_size: 128}\n"
                    "priority_pools: {slo_ttft_ms: 800, slo_tpot_ms: 80, migration: recompute}\n")
    dep = load_deployment(str(path))
    assert dep.priority_pools.migration == "recompute" and dep.instances[1].pool == "hp"
    res = simulate(dep, starving_workload(n=60, rate=10.0), check_invariants=True)  # the block's own SLOs
    assert "priority_pools" in res.policy
    for text, message in (("instances: [{pool: hp, hardware: h100-sxm}]\n", "needs the deployment's `priority_pools`"),
                          ("instances: [{pool: lp, hardware: h100-sxm}]\npriority_pools: {}\n",
                           "one instance group with pool: hp"),
                          ("instances: [{pool: hp, hardware: h100-sxm}]\npriority_pools: {}\n",
                           "at least one low-priority"),
                          ("instances: [{pool: lp, hardware: h100-sxm}, {pool: hp, hardware: h100-sxm}]\n"
                           "priority_pools: {migration: x}\n", "migration")):
        path.write_text("model: meta-llama/Meta-Llama-3-8B\n" + text)
        with pytest.raises(PhasewiseError, match=message):
            load_deployment(str(path))


def test_scenario_passes_on_defaults(scenario_defaults):
    """Every check but goodput vs Sarathi, a known gap on the default arrival seed (tests/test_reproduce.py
    KNOWN_GAPS: 1.72 vs the band's 1.7), which still holds its direction."""
    result = scenario_defaults("ascendra")
    failed = {c.name for c in result.outcome.checks if not c.passed}
    assert failed <= {"goodput vs Sarathi"}, [(c.name, c.phasewise, c.band) for c in result.outcome.checks]
    sarathi = next(c for c in result.outcome.checks if c.name == "goodput vs Sarathi")
    assert 1.2 <= sarathi.phasewise < 1.8
    assert len(result.outcome.figures) >= 4


@pytest.mark.parametrize("sets", [
    {"model": "Qwen/Qwen3-8B", "trace": "azure-code"},
    {"hardware": "h100-sxm", "slo_ttft_ms": "500", "slo_tpot_ms": "40"},
])
def test_scenario_direction_holds_under_other_setups(sets):
    result = get_scenario("ascendra").run(sets)
    ratios = {c.name: c.phasewise for c in result.outcome.checks}
    assert ratios["goodput vs vLLM"] > 1.0 and ratios["goodput vs Sarathi"] > 1.0, ratios
    assert ratios["HP TBT violations"] <= 0.02


def test_hp_ttft_violations_count_only_the_first_tokens_hp_produced(monkeypatch):
    """A request migrated while decoding had its first token on LP: a TTFT it missed there is not HP's (31 of the
    37 HP TTFT violations of this run were such, before); HP answers for the TTFT of the prompts moved to it."""
    from phasewise.sim.instance import Instance

    moved_waiting = set()
    enqueue = Instance.enqueue

    def watched(self, req, *args, through_frontend=True, **kwargs):
        if not through_frontend:  # the controller moving a waiting prompt from LP to HP
            moved_waiting.add(req.id)
        return enqueue(self, req, *args, through_frontend=through_frontend, **kwargs)

    monkeypatch.setattr(Instance, "enqueue", watched)
    result = run(check_invariants=True, scheduler="ascendra", replicas=2, hp_instances=1, migration="transfer",
                 rate=30, requests=400, isl=2000, osl=300, isl_dist="uniform", isl_spread=0.9, osl_dist="uniform",
                 osl_spread=0.9, slo_ttft_ms=500, slo_tpot_ms=30)
    figures = result.policy["priority_pools"]
    ttft = result.first_token_s - result.arrival_s
    assert figures["migrations_transfer"] > 0 and len(moved_waiting) == figures["offloads_waiting"]
    assert figures["hp_ttft_violations"] == sum(ttft[i] > 0.5 for i in moved_waiting)
