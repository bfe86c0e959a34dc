"""The router a disaggregated deployment was simulated behind (Deployment.router: its prefill instances' and its
decode instances' routers, sim/cluster.py), as each engine's P/D front takes it, so that what `plan --export`
launches routes as what was planned did:

- SGLang's router (`python -m sglang_router.launch_router --pd-disaggregation`) chooses a prefill and a decode
  worker with a policy each, `--prefill-policy` / `--decode-policy`: random, round_robin, cache_aware (the longest
  cached prefix, load-balanced), power_of_two (the less loaded of two drawn workers) (docs.sglang.io router page,
  "Prefill-Decode Disaggregation": `--prefill-policy cache_aware --decode-policy power_of_two`). It has no
  least-loaded policy: power_of_two stands for least outstanding work and most free KV blocks.
- TensorRT-LLM's disaggregated server reads a `router` block in each of disagg.yaml's context_servers and
  generation_servers, its `type` round_robin (the default), load_balancing (the fewest requests in flight),
  kv_cache_aware or conversation (tensorrt_llm/llmapi/disagg_utils.py extract_router_config; serve/router.py
  create_router). It has no random router.
- vLLM has no P/D front of its own; NVIDIA Dynamo's frontend routes its workers with `--router-mode`
  round-robin (its default), random or kv (docs/pages/components/frontend/configuration.md).
A decode router that weighs cached prefixes (prefix_aware, dynamo_kv) balances load there, as Dynamo's decode
routing drops its overlap term (sim/routers/dynamo_kv.py)."""

from __future__ import annotations

from phasewise.apps.launch_args import engine_flags

# phasewise router -> (prefill policy, decode policy)
SGLANG_PD_POLICIES = {
    "round_robin": ("round_robin", "round_robin"),
    "random": ("random", "random"),
    "least_outstanding": ("power_of_two", "power_of_two"),
    "kv_aware": ("power_of_two", "power_of_two"),
    "prefix_aware": ("cache_aware", "power_of_two"),
    "dynamo_kv": ("cache_aware", "power_of_two"),
}
TRTLLM_DISAGG_ROUTERS = {
    "round_robin": ("round_robin", "round_robin"),
    "least_outstanding": ("load_balancing", "load_balancing"),
    "kv_aware": ("load_balancing", "load_balancing"),
    "prefix_aware": ("kv_cache_aware", "load_balancing"),
    "dynamo_kv": ("kv_cache_aware", "load_balancing"),
}
DYNAMO_ROUTER_MODES = {"round_robin": "round-robin", "random": "random", "dynamo_kv": "kv"}
_WEIGHS = {"least_outstanding": "outstanding tokens", "kv_aware": "free KV blocks"}  # what those two routers weigh


def sglang_policy_args(router: str) -> tuple[list[str], list[str]]:
    """sgl-router's PD policies for `router`: its arguments and the comment lines that say where they are near."""
    prefill, decode = SGLANG_PD_POLICIES[router]
    notes = [f"router {router}: sgl-router has no policy by {_WEIGHS[router]}; power_of_two, the less loaded of two "
             "drawn workers, stands for it"] if router in _WEIGHS else []
    return ["--prefill-policy", prefill, "--decode-policy", decode], notes


def trtllm_router_blocks(router: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """disagg.yaml's `router` blocks (context servers, generation servers) for `router` and the comment lines."""
    if router not in TRTLLM_DISAGG_ROUTERS:
        published = ", ".join(engine_flags()["trtllm"]["disaggregated"]["router_types"])
        return ({"type": "round_robin"}, {"type": "round_robin"},
                [f"router {router}: trtllm-serve disaggregated has none ({published}): round_robin written"])
    context, generation = TRTLLM_DISAGG_ROUTERS[router]
    notes = [f"router {router}: load_balancing counts the requests in flight, not {_WEIGHS[router]}"] \
        if router in _WEIGHS else []
    return {"type": context}, {"type": generation}, notes


def dynamo_frontend(router: str) -> str:
    """Dynamo's frontend command routing as `router` (one of DYNAMO_ROUTER_MODES)."""
    return f"python -m dynamo.frontend --router-mode {DYNAMO_ROUTER_MODES[router]}"


def dynamo_router_note(router: str) -> str:
    """How Dynamo's frontend routes as `router` did, for a vLLM P/D deployment's comment."""
    if router in DYNAMO_ROUTER_MODES:
        return f"routed as planned (router {router}) by `{dynamo_frontend(router)}`"
    return (f"router {router} has no Dynamo mode (round-robin, random, kv): llm-d's scheduler scores load and "
            "cached prefixes, or Dynamo's --router-mode kv weighs both")
