"""A disaggregated deployment's launch script routes as it was simulated (apps/launch_routers.py): its router as
sgl-router's per-pool policies, as the `router` blocks of TensorRT-LLM's disagg.yaml, as Dynamo's --router-mode in
vLLM's note; each name one the engine publishes (apps/data/engine_flags.yaml), the approximations said."""

from __future__ import annotations

import pytest
import yaml

from phasewise.apps.launch import launch_commands
from phasewise.apps.launch_args import engine_flags
from phasewise.apps.launch_routers import SGLANG_PD_POLICIES, TRTLLM_DISAGG_ROUTERS
from phasewise.plan.options import ROUTERS
from phasewise.sim.deployment import build_deployment


def front(engine: str, router: str):
    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "router": router, "kv_link": "rdma", "instances": [
        {"role": "prefill", "tp": 1, "replicas": 2, "engine": engine},
        {"role": "decode", "tp": 2, "replicas": 2, "engine": engine}]})
    _, command, files = launch_commands(dep)
    return command, files


def test_every_router_has_an_sglang_policy_pair_the_router_publishes():
    assert set(SGLANG_PD_POLICIES) == set(ROUTERS)
    published = engine_flags()["sglang"]["router"]["flags"]
    for pair in SGLANG_PD_POLICIES.values():
        assert pair[0] in published["--prefill-policy"]["choices"]
        assert pair[1] in published["--decode-policy"]["choices"]
    types = engine_flags()["trtllm"]["disaggregated"]["router_types"]
    assert all(t in types for pair in TRTLLM_DISAGG_ROUTERS.values() for t in pair)


@pytest.mark.parametrize("router, prefill, decode, approximated", [
    ("round_robin", "round_robin", "round_robin", False),
    ("random", "random", "random", False),
    ("least_outstanding", "power_of_two", "power_of_two", True),
    ("prefix_aware", "cache_aware", "power_of_two", False),
])
def test_sglang_router_policies(router, prefill, decode, approximated):
    command, _ = front("sglang", router)
    argv = command.argv
    assert argv[argv.index("--prefill-policy") + 1] == prefill and argv[argv.index("--decode-policy") + 1] == decode
    assert any("power_of_two" in c and router in c for c in command.comments) == approximated


@pytest.mark.parametrize("router, context, generation, note", [
    ("round_robin", "round_robin", "round_robin", None),
    ("least_outstanding", "load_balancing", "load_balancing", "requests in flight"),
    ("dynamo_kv", "kv_cache_aware", "load_balancing", None),
    ("random", "round_robin", "round_robin", "has none"),
])
def test_trtllm_disagg_yaml_router_blocks(router, context, generation, note):
    command, files = front("trtllm", router)
    config = yaml.safe_load(files["disagg.yaml"])
    assert config["context_servers"]["router"] == {"type": context}
    assert config["generation_servers"]["router"] == {"type": generation}
    said = [c for c in command.comments if c.startswith(f"router {router}")]
    assert (note in said[0]) if note else not said


@pytest.mark.parametrize("router, says", [
    ("random", "--router-mode random"), ("dynamo_kv", "--router-mode kv"), ("round_robin", "--router-mode round-robin"),
    ("prefix_aware", "has no Dynamo mode"),
])
def test_vllm_note_names_dynamos_mode(router, says):
    command, _ = front("vllm", router)
    assert any(says in c for c in command.comments)
