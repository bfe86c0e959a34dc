"""Review fixes to `plan --export`'s launch commands: the DeepEP all-to-all flags (vLLM's --all2all-backend, SGLang's
--moe-a2a-backend) are in the published flag list (apps/data/engine_flags.yaml) with the values the DeepEP knobs take,
so every generated command parses; vLLM's flag is 0.11.1's (PR #26732), so a vllm@0.11 plan's script says which
version it needs."""

import pytest
from test_plan_export import PREFIX, _parse

from phasewise.apps.launch import launch_commands, launch_script
from phasewise.apps.launch_args import engine_flags
from phasewise.sim.deployment import build_deployment
from phasewise.specs.engines import DEEPEP_CHOICE, KNOB_CHOICES, deepep_fields

MOE = "Qwen/Qwen3-30B-A3B"
FLAG = {"all2all_backend": ("vllm", "--all2all-backend"), "moe_a2a_backend": ("sglang", "--moe-a2a-backend")}


def _dp_ep(engine: str, roles: tuple[str, ...]) -> dict:
    """Attention DP 16 x EP 16 on two 8-GPU nodes per instance, each role with its DeepEP choice."""
    data = {"model": MOE, "instances": [{"role": role, "hardware": "h100-sxm", "engine": engine, "tp": 16, "ep": 16,
                                         "attention_dp": 16, **deepep_fields(engine, role)} for role in roles]}
    return data | ({"kv_link": "rdma"} if len(roles) > 1 else {})


@pytest.mark.parametrize("knob", list(FLAG))
def test_every_value_a_deepep_knob_takes_is_a_published_choice_of_its_flag(knob):
    """The knob's allowed values (specs/engine_knob_checks.py KNOB_CHOICES) and each role's DeepEP choice are values the engine's
    flag accepts: the flag was missing from the list, so no check saw them."""
    engine, flag = FLAG[knob]
    choices = engine_flags()[engine]["flags"][flag]["choices"]
    assert set(KNOB_CHOICES[knob]) <= set(choices)
    assert set(DEEPEP_CHOICE[knob].values()) <= set(choices)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("roles", [("collocated",), ("prefill", "decode")])
def test_multi_node_deepep_commands_parse_against_the_published_flags(engine, roles):
    """Every per-node command of a DeepEP deployment parses (vLLM: deepep_high_throughput on prefill,
    deepep_low_latency on decode and collocated; SGLang: deepep), the choice passed as the deployment gives it."""
    flags = engine_flags()[engine]
    dep = build_deployment(_dp_ep(engine, roles))
    workers, _, _ = launch_commands(dep)
    assert len(workers) == 2 * len(roles)  # one command on each of an instance's two nodes
    for cmd in workers:
        args = _parse(flags, cmd.argv[len(PREFIX[engine]):])
        role = next(r for r in roles if r in cmd.comments[0])
        ((knob, value),) = deepep_fields(engine, role).items()
        assert getattr(args, knob) == value, cmd.argv


def test_a_vllm_0_11_plan_with_deepep_says_it_needs_vllm_0_11_1():
    """--all2all-backend is not in vLLM 0.11.0 (VLLM_ALL2ALL_BACKEND then): the script names the version it needs;
    0.14 (the default) has it, so nothing is said."""
    said = "--all2all-backend needs vLLM >= 0.11.1: vLLM 0.11 (the version the plan modelled)"
    for engine, needs in (("vllm@0.11", True), ("vllm", False)):
        data = _dp_ep("vllm", ("collocated",))
        data["instances"][0]["engine"] = engine
        script, _ = launch_script(build_deployment(data), [])
        assert (said in script) == needs, engine
