"""Launch commands for a deployment, in each engine's own argument names (apps/data/engine_flags.yaml):
`vllm serve` (disaggregated: NixlConnector workers, as llm-d launches them), `python -m sglang.launch_server`
(disaggregated: --disaggregation-mode workers behind sglang_router's PD router) and `trtllm-serve` with an
LLM-API options YAML (disaggregated: context and generation servers behind `trtllm-serve disaggregated`).

One command per instance and node (an instance wider than a node: one per node with the engine's multi-node
arguments, or TensorRT-LLM's one MPI launch); a field the engine has no argument for is a comment line of the
script, never dropped silently. What the engines' commands share (precision and KV dtype arguments, the KV block,
the engine versions, notes) is apps/launch_args.py's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from phasewise.apps.launch_args import (
    KV_BACKEND,
    NODE_VAR,
    Command,
    common_notes,
    engine_family,
    engine_lines,
    kv_dtype_arg,
    launch_version,
    multi_node_needs,
    node_addr,
    precision_args,
    remote_code_argv,
    reuse_refused,
    run_block,
    version_needs,
)
from phasewise.apps.launch_caps import prefix_caching_setting, trtllm_simulated_caps
from phasewise.apps.launch_nodes import node_count, per_node, placements
from phasewise.apps.launch_routers import (
    dynamo_frontend,
    dynamo_router_note,
    sglang_policy_args,
    trtllm_router_blocks,
)
from phasewise.apps.launch_vllm_caps import budget_refused, vllm_max_model_len, vllm_simulated_caps
from phasewise.errors import PhasewiseError
from phasewise.perf.startup import startup_estimate
from phasewise.plan.export import absolute_paths, check_output_path, deployment_yaml, pick, plan_header
from phasewise.plan.planner import PlanResult
from phasewise.sim.deployment import Deployment, InstanceGroup, build_deployment
from phasewise.sim.simulate import build_group
from phasewise.specs import load_model
from phasewise.specs.engines import role_knobs
from phasewise.specs.model_catalog import checkpoint_id

# instances are packed onto nodes in order, a node holding its chip's interconnect.gpus_per_node (hardware_spec.py;
# 8 on an HGX/DGX node); one that fits a node does not straddle two, a wider one takes whole nodes
FRONT_PORT = 8000  # the router / front end; workers listen from FRONT_PORT + 1 up
# what runs a collocated deployment's router policy in front of its replicas
ROUTER_FRONTS = {
    None: "e.g. llm-d's gateway, sglang_router, or a least-connections proxy",
    "prefix_aware": "sglang_router's --policy cache_aware",
    "round_robin": "NVIDIA Dynamo: python -m dynamo.frontend (round-robin, its default --router-mode), or any "
                   "round-robin proxy",
    "random": f"NVIDIA Dynamo: {dynamo_frontend('random')}",
    "dynamo_kv": f"NVIDIA Dynamo: {dynamo_frontend('dynamo_kv')}{{settings}}, with each worker run as python "
                 "-m dynamo.vllm | dynamo.sglang | dynamo.trtllm",
}
SGLANG_BOOTSTRAP_PORT = 8998  # server_args.py disaggregation_bootstrap_port default; + the prefill server's index


def _vllm(dep: Deployment, g: InstanceGroup, port: int, longest_request: int | None = None) -> Command:
    """`longest_request`: the workload's longest request (prompt and output tokens), where the plan knows it."""
    notes = common_notes(dep, g, "vllm")
    argv = ["vllm", "serve", checkpoint_id(g.model or dep.model), "--port", str(port)]
    argv += remote_code_argv(dep, g, "vllm", notes)
    dp = g.attention_dp or 1
    argv += ["--tensor-parallel-size", str(g.tp // dp)]
    if dp > 1:
        argv += ["--data-parallel-size", str(dp)]
    if g.pp > 1:
        argv += ["--pipeline-parallel-size", str(g.pp)]
    if (g.ep or (g.tp // g.moe_tp if g.moe_tp else 1)) > 1:  # all tp x dp GPUs: a partial EP is refused on vLLM
        argv.append("--enable-expert-parallel")  # (specs/engine_refusals.py layout_refusal, WHOLE_INSTANCE_EP)
    argv += precision_args(dep, g, "vllm", notes)
    kv = kv_dtype_arg(dep, g, "vllm", notes)
    if kv:
        argv += ["--kv-cache-dtype", kv]
    built = build_group(dep, g, dep.instances.index(g))  # (cost model, KV tokens, _, engine): as simulated
    context = vllm_max_model_len(dep, g, built, longest_request, notes)  # None: the model's own
    knobs = g.knobs
    if "chunk_size" in knobs:  # Sarathi's token budget is vLLM's chunked-prefill budget
        knobs = dict(knobs, max_num_batched_tokens=knobs.pop("chunk_size"), enable_chunked_prefill=True)
    for knob, value in knobs.items():
        if knob == "max_num_batched_tokens" and budget_refused(built[3], value, context,
                                                               load_model(g.model or dep.model)):
            pass  # a whole-prompt budget below max_model_len, which vLLM refuses
        elif knob in ("max_num_seqs", "max_num_batched_tokens"):
            argv += [f"--{knob.replace('_', '-')}", str(value)]
        elif knob == "max_num_partial_prefills":
            pass  # 1, vLLM's own value: the V1 presets refuse more (engine_presets.yaml), so nothing to write
        elif knob == "enable_chunked_prefill":
            argv.append("--enable-chunked-prefill" if value else "--no-enable-chunked-prefill")
        elif knob == "async_scheduling":
            argv.append("--async-scheduling" if value else "--no-async-scheduling")
        elif knob == "mamba_ssm_dtype":  # auto: the model's dtype (BF16 checkpoints)
            argv += ["--mamba-ssm-cache-dtype", {"fp32": "float32", "bf16": "auto"}[value]]
        elif knob == "all2all_backend":  # VLLM_ALL2ALL_BACKEND in versions before the flag
            argv += ["--all2all-backend", value]
        else:
            notes.append(f"{knob} {value}: no vLLM argument")
    argv += vllm_simulated_caps(dep, g, built[3], argv, context, notes)
    if g.memory_fraction is not None:  # else vLLM's own default (0.9), as simulated
        argv += ["--gpu-memory-utilization", f"{g.memory_fraction:g}"]
    if context is not None:
        argv += ["--max-model-len", str(context)]
    argv += ["--block-size", str(run_block(dep, g, notes))]
    caching = prefix_caching_setting(dep, g, "vllm", built[3])  # None: vLLM's own default, as simulated
    if caching is not None:
        argv.append("--enable-prefix-caching" if caching else "--no-enable-prefix-caching")
    if g.host_kv_cache_bytes and g.role == "collocated":
        # GiB for each data-parallel rank: each runs its own engine core (v1/engine/core.py DPEngineCoreProc) whose
        # OffloadingConnector takes the whole --kv-offloading-size (vllm 0.14 config/vllm.py
        # _post_init_kv_transfer_config: cpu_bytes_to_use = kv_offloading_size * 2**30) and shares it only among its
        # own TP x PP workers (v1/kv_offload/cpu.py CPUOffloadingSpec: blocks = cpu_bytes_to_use // (page bytes x
        # parallel_config.world_size), world_size = TP x PP, DP not counted): the instance's tier split over its
        # attention-DP ranks, as simulated (sim/prefix_cache_ranks.py rank_host_tier)
        argv += ["--kv-offloading-size", f"{g.host_kv_cache_bytes / dp / 2**30:.4g}", "--kv-offloading-backend",
                 "native"]
        if dp > 1:
            notes.append(f"--kv-offloading-size: each of the {dp} data-parallel ranks' own host KV tier, "
                         f"{g.host_kv_cache_bytes / 1e9:g} GB planned for the instance in all")
    elif g.host_kv_cache_bytes:
        notes.append("host_kv_cache_bytes beside the disaggregation connector needs vLLM's MultiConnector (NIXL + "
                     "OffloadingConnector): not emitted")
    if dep.speculative is not None:
        argv += ["--speculative-config", json.dumps(_vllm_spec(dep, notes), separators=(",", ":"))]
    if g.role != "collocated":
        argv += ["--kv-transfer-config", json.dumps({"kv_connector": KV_BACKEND["vllm"], "kv_role": "kv_both"},
                                                    separators=(",", ":"))]
    return Command(argv, env=_vllm_mxfp4_env(built[0], notes), comments=notes)


def _vllm_mxfp4_env(cost, notes: list[str]) -> dict[str, str]:
    """MXFP4 experts run as simulated (quant.yaml mxfp4-w4a8: MXFP8 activations where the chip has the FP4-class
    path): vLLM takes its MXFP4 x BF16 kernels on Blackwell unless this is set (get_mxfp4_backend), as
    InferenceX's and vLLM's GPT-OSS recipes set it."""
    expert = cost.expert_quant  # the instance's cost model (build_group)
    if expert is None or expert.name != "mxfp4-w4a8" or expert.compute_dtype != "fp8":
        return {}
    if cost.hw.vendor == "amd":  # the variable picks a FlashInfer (CUDA) kernel; ROCm has none
        notes.append("MXFP4 experts simulated with MXFP8 activations (W4A8); vLLM on ROCm chooses its own MXFP4 MoE "
                     "kernel (AITER or Triton): check that it quantizes the activations")
        return {}
    notes.append("VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1: the MXFP4 experts take MXFP8 activations (W4A8), as "
                 "simulated; without it vLLM runs them with BF16 activations on Blackwell")
    return {"VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8": "1"}


def _vllm_spec(dep: Deployment, notes: list[str]) -> dict[str, Any]:
    spec = dep.speculative
    notes.append(f"speculative decoding: acceptance {spec.acceptance:g} is the workload's, not an argument")
    if spec.draft == "mtp":
        notes.append("method mtp needs a checkpoint with MTP layers (e.g. DeepSeek-V3); else use an EAGLE draft")
        return {"method": "mtp", "num_speculative_tokens": spec.draft_tokens}
    return {"model": checkpoint_id(spec.draft), "num_speculative_tokens": spec.draft_tokens}


def _sglang(dep: Deployment, g: InstanceGroup, port: int) -> Command:
    notes = common_notes(dep, g, "sglang")
    argv = ["python", "-m", "sglang.launch_server", "--model-path", checkpoint_id(g.model or dep.model),
            "--port", str(port), "--tp-size", str(g.tp)]
    argv += remote_code_argv(dep, g, "sglang", notes)
    if g.pp > 1:
        argv += ["--pp-size", str(g.pp)]
    if (g.attention_dp or 1) > 1:
        argv += ["--dp-size", str(g.attention_dp), "--enable-dp-attention"]
    ep = g.ep or (g.tp // g.moe_tp if g.moe_tp else 1)
    if ep > 1:
        argv += ["--ep-size", str(ep)]  # SGLang's MoE tensor parallelism is then tp / ep, as planned
    argv += precision_args(dep, g, "sglang", notes)
    kv = kv_dtype_arg(dep, g, "sglang", notes)
    if kv:
        argv += ["--kv-cache-dtype", kv]
    for knob, value in g.knobs.items():
        if knob in ("max_running_requests", "chunked_prefill_size", "max_prefill_tokens", "cuda_graph_max_bs",
                    "schedule_conservativeness", "scheduler_recv_interval", "piecewise_cuda_graph_max_tokens",
                    "prefill_delayer_max_delay_passes"):
            argv += [f"--{knob.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
        elif knob in ("enable_mixed_chunk", "enable_piecewise_cuda_graph", "enable_prefill_delayer"):
            if value:
                argv.append(f"--{knob.replace('_', '-')}")
        elif knob == "disable_hybrid_swa_memory":
            if value:
                argv.append("--disable-hybrid-swa-memory")
        elif knob == "swa_full_tokens_ratio":
            argv += ["--swa-full-tokens-ratio", f"{value:g}"]
        elif knob == "mamba_ssm_dtype":
            argv += ["--mamba-ssm-dtype", {"fp32": "float32", "bf16": "bfloat16"}[value]]
        elif knob == "hicache_write_policy":
            argv += ["--hicache-write-policy", value]
        elif knob == "moe_a2a_backend":
            argv += ["--moe-a2a-backend", value]
        else:
            notes.append(f"{knob} {value}: no SGLang argument")
    if g.memory_fraction is not None:  # else SGLang computes its own, as simulated (specs/engines.py)
        argv += ["--mem-fraction-static", f"{g.memory_fraction:g}"]
    argv += ["--page-size", str(run_block(dep, g, notes))]
    # SGLang caches prefixes unless told (its radix cache): only the off switch exists
    if prefix_caching_setting(dep, g, "sglang", build_group(dep, g, dep.instances.index(g))[3]) is False:
        argv.append("--disable-radix-cache")
    if g.host_kv_cache_bytes:  # SGLang's --hicache-size: GB of host memory per rank
        argv += ["--enable-hierarchical-cache", "--hicache-size", f"{g.host_kv_cache_bytes / (g.tp * g.pp) / 1e9:.4g}"]
    if dep.speculative is not None:
        spec = dep.speculative
        if spec.draft == "mtp":
            argv += ["--speculative-algorithm", "NEXTN", "--speculative-num-steps", str(spec.draft_tokens),
                     "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", str(spec.draft_tokens + 1)]
        else:  # a small draft LLM: SGLang's STANDALONE algorithm (srt/server_args.py --speculative-algorithm choices
            # EAGLE, EAGLE3, NEXTN, STANDALONE, NGRAM; speculative/standalone_worker.py loads the draft model from
            # --speculative-draft-model-path), one chain of k drafts as simulated
            argv += ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path",
                     checkpoint_id(spec.draft), "--speculative-num-steps", str(spec.draft_tokens),
                     "--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", str(spec.draft_tokens + 1)]
    if g.role != "collocated":
        argv += ["--disaggregation-mode", g.role, "--disaggregation-transfer-backend", KV_BACKEND["sglang"]]
        if g.knobs.get("enable_prefill_delayer"):
            notes.append("--enable-prefill-delayer on a disaggregated server: SGLang 0.5.8's PrefillDelayer asserts "
                         "disaggregation_mode null (srt/managers/prefill_delayer.py); a prefill server takes it from "
                         "sglang PR #23588 (2026-04) on")
    if g.role == "decode" and (g.attention_dp or 1) > 1:
        # server_args.py _handle_disaggregation asserts it for a decode server with --dp-size > 1
        argv.append("--prefill-round-robin-balance")
        notes.append("--prefill-round-robin-balance: SGLang requires it of a decode server with --dp-size > 1, its "
                     "prefill servers balancing round robin (their --load-balance-method default)")
    return Command(argv, comments=notes)


def _trtllm(dep: Deployment, g: InstanceGroup, port: int, index: int, longest_prompt: int | None = None) -> Command:
    """`longest_prompt`: the workload's longest prompt, where the plan knows it (launch_caps.trtllm_simulated_caps)."""
    notes = common_notes(dep, g, "trtllm")
    engine = build_group(dep, g, dep.instances.index(g))[3]  # as simulated
    options: dict[str, Any] = {}
    ep = g.ep or (g.tp // g.moe_tp if g.moe_tp else 1)
    argv = ["trtllm-serve", checkpoint_id(g.model or dep.model), "--backend", "pytorch", "--port", str(port),
            "--tp_size", str(g.tp)]
    argv += remote_code_argv(dep, g, "trtllm", notes)
    if g.pp > 1:
        argv += ["--pp_size", str(g.pp)]
    if ep > 1:
        argv += ["--ep_size", str(ep)]
        options.update(moe_expert_parallel_size=ep, moe_tensor_parallel_size=g.tp // ep)
    dp = g.attention_dp or 1
    if dp > 1:
        options["enable_attention_dp"] = True
        if dp != g.tp:
            notes.append(f"attention_dp {dp} of tp {g.tp}: TensorRT-LLM's attention DP spans all tp ranks "
                         f"(attention_dp = {g.tp}); a partial one has no argument")
    argv += precision_args(dep, g, "trtllm", notes)
    kv_cache: dict[str, Any] = {"tokens_per_block": run_block(dep, g, notes)}
    if g.memory_fraction is not None:  # else TensorRT-LLM's own default (0.9), as simulated
        kv_cache["free_gpu_memory_fraction"] = g.memory_fraction
    kv = kv_dtype_arg(dep, g, "trtllm", notes)
    if kv:
        kv_cache["dtype"] = kv
    caching = prefix_caching_setting(dep, g, "trtllm", engine)  # None: trtllm-serve's own default, as simulated
    if caching is not None:
        kv_cache["enable_block_reuse"] = caching
    elif refused := reuse_refused(dep, g):  # TensorRT-LLM's default (on) would not start: off, as simulated
        kv_cache["enable_block_reuse"] = False
        notes.append(f"enable_block_reuse false: {refused}")
    if g.host_kv_cache_bytes:  # bytes of host memory for offloaded blocks, each rank's own KV cache manager
        kv_cache["host_cache_size"] = int(g.host_kv_cache_bytes / (g.tp * g.pp))
    options["kv_cache_config"] = kv_cache
    knobs = {**role_knobs(g.engine, g.role), **g.knobs}
    for knob, value in knobs.items():
        if knob in ("max_batch_size", "max_num_tokens"):
            argv += [f"--{knob}", str(value)]
        elif knob in ("enable_chunked_prefill", "disable_overlap_scheduler", "batch_wait_timeout_iters",
                      "batch_wait_max_tokens_ratio"):
            options[knob] = value
        elif knob.startswith("attention_dp_"):  # attention_dp_config {enable_balance, timeout_iters, batching_wait_iters}
            options.setdefault("attention_dp_config", {})[knob.removeprefix("attention_dp_")] = value
        elif knob == "cuda_graph_max_batch_size":
            options.setdefault("cuda_graph_config", {})["max_batch_size"] = value
        elif knob == "cuda_graph_padding_enabled":
            options.setdefault("cuda_graph_config", {})["enable_padding"] = value
        else:
            notes.append(f"{knob} {value}: no TensorRT-LLM argument")
    caps = trtllm_simulated_caps(dep, g, engine, knobs, longest_prompt)
    argv += caps.argv
    options.update(caps.options)
    notes += caps.differs
    if dep.speculative is not None:
        spec = dep.speculative
        if spec.draft == "mtp":
            options["speculative_config"] = {"decoding_type": "MTP", "num_nextn_predict_layers": spec.draft_tokens}
        else:  # a plain draft LLM: TensorRT-LLM 1.x's draft/target mode (llmapi/llm_args.py DraftTargetDecodingConfig,
            # decoding_type "Draft_Target", the PyTorch backend's ModelDrafter; max_draft_len and
            # speculative_model_dir from DecodingBaseConfig), not Eagle, whose draft is an EAGLE head
            options["speculative_config"] = {"decoding_type": "Draft_Target", "max_draft_len": spec.draft_tokens,
                                             "speculative_model_dir": checkpoint_id(spec.draft)}
    if g.role != "collocated":
        options["cache_transceiver_config"] = {"backend": KV_BACKEND["trtllm"]}
    name = f"extra-llm-api-{g.role}-{index}.yaml"
    argv += ["--extra_llm_api_options", name]
    return Command(argv, comments=notes, files={name: yaml.safe_dump(options, sort_keys=False)}, differs=caps.differs)


def launch_commands(dep: Deployment, longest_request: int | None = None, longest_prompt: int | None = None
                    ) -> tuple[list[Command], Command | None, dict[str, str]]:
    """(one command per instance and node, the front end's command or None, extra config files) for `dep`'s
    engines; each command's `node` says where it runs. `longest_request`: the workload's longest request (prompt
    and output tokens) where known, for a vLLM command that must cap its context
    (launch_vllm_caps.vllm_max_model_len); `longest_prompt`: its longest prompt where known, for a TensorRT-LLM
    command whose simulated preset ran prompts past its budget (launch_caps.trtllm_simulated_caps)."""
    workers: list[Command] = []
    files: dict[str, str] = {}
    places = placements(dep)
    nodes = node_count(dep)
    port, prefills = FRONT_PORT + 1, 0
    urls: dict[str, list[str]] = {"prefill": [], "decode": []}
    hosts: dict[str, list[str]] = {"prefill": [], "decode": []}  # node:port, for the config files
    bootstrap: list[int] = []  # SGLang prefill servers' bootstrap ports, as urls["prefill"]
    families = set()
    for index, g in enumerate(dep.instances):
        family = engine_family(g.engine)
        families.add(family)
        for replica, place in enumerate(places[index]):
            if family == "vllm":
                cmd = _vllm(dep, g, port, longest_request)
            elif family == "sglang":
                cmd = _sglang(dep, g, port)
            else:
                cmd = _trtllm(dep, g, port, index, longest_prompt)
            if nodes > 1 and family != "vllm":  # vLLM's API server binds every interface already
                cmd.argv += ["--host", "0.0.0.0"]
            if family == "sglang" and g.role == "prefill":  # each its own bootstrap server, told to the router
                bootstrap.append(SGLANG_BOOTSTRAP_PORT + prefills)
                cmd.argv += ["--disaggregation-bootstrap-port", str(bootstrap[-1])]
                prefills += 1
            version = launch_version(dep, g, family)
            cmd.needs = version_needs(family, cmd.argv, version)
            cmd.comments += cmd.needs
            head = place.nodes[0]
            where = f"on node {head}" if len(place.nodes) == 1 else (
                f"on nodes {head}-{place.nodes[-1]} ({place.gpus} GPUs on each)")
            cmd.comments.insert(0, f"{g.role} {replica + 1}/{g.replicas} {where}")
            if replica:
                cmd.comments = cmd.comments[:1]  # the group's notes once
            # one node: the front end reaches the servers on localhost, where SGLang and trtllm-serve listen by
            # default (engine_flags.yaml --host); over several: each node's address (disagg.yaml: its name, noted)
            urls.setdefault(g.role, []).append(f"http://{node_addr(head) if nodes > 1 else 'localhost'}:{port}")
            hosts.setdefault(g.role, []).append(f"{f'node{head}' if nodes > 1 else 'localhost'}:{port}")
            for node_cmd in per_node(cmd, family, g, place, nodes > 1):
                # the multi-node arguments per_node adds need what they need too (vLLM's --nnodes: 0.11.1 on)
                added = multi_node_needs(family, node_cmd.argv, node_cmd.needs, version)
                node_cmd.needs, node_cmd.comments = node_cmd.needs + added, node_cmd.comments + added
                files.update(node_cmd.files)
                workers.append(node_cmd)
            port += 1
    if dep.encoders is not None:  # planned, but no engine launches them from the same flags: said, not dropped
        enc = dep.encoders
        workers[0].comments.append(
            f"disaggregated encoders planned: {enc.replicas} encode worker(s) of {enc.tp} x {enc.hardware}, embeddings "
            f"over {enc.link}: not launched by this export; run them as vLLM's disaggregated encoder "
            "(--ec-transfer-config), SGLang's encoder-only servers or Dynamo's multimodal encode workers")
    front = None
    if dep.disaggregated:
        front = _disagg_front(dep, families, urls, hosts, bootstrap, files, nodes)
    elif len(places) > 1 or len(places[0]) > 1:  # replicas behind one endpoint: the router policy, run by a gateway
        front = Command([], comments=[f"{sum(map(len, places))} instances behind one endpoint: route with a "
                                      f"{dep.router} policy ({_router_front(dep)}) to "
                                      + " ".join(u for us in urls.values() for u in us)])
    return workers, front, files


def _router_front(dep: Deployment) -> str:
    """The gateway the deployment's router policy names, with Dynamo's flags for the settings it sets."""
    settings = "".join(f" --{flag} {value:g}" for flag, value in (
        ("kv-overlap-score-weight", dep.kv_overlap_score_weight), ("router-temperature", dep.router_temperature),
        ("router-queue-threshold", dep.router_queue_threshold)) if value is not None)
    if dep.router_kv_events is False:
        ttl = "" if dep.router_ttl_s is None else f" --router-ttl-secs {dep.router_ttl_s:g}"
        settings += f" --no-router-kv-events{ttl}"
    return ROUTER_FRONTS.get(dep.router, ROUTER_FRONTS[None]).format(settings=settings)


def _disagg_front(dep: Deployment, families: set[str], urls: dict[str, list[str]], hosts: dict[str, list[str]],
                  bootstrap: list[int], files: dict[str, str], nodes: int) -> Command:
    family = families.pop() if len(families) == 1 else "vllm"
    note = [f"KV link planned: {dep.kv_link}; transfer: {KV_BACKEND[family]} (set UCX_TLS / UCX_NET_DEVICES "
            "for your NICs)"]
    if dep.attention_offload is not None and dep.attention_offload.mode != "off":
        note.append("attention_offload (Adrenaline) has no engine equivalent: not launched")
    if family == "sglang":  # each prefill server with its bootstrap port (sgl-router: --prefill URL BOOTSTRAP_PORT)
        argv = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
        for u, p in zip(urls["prefill"], bootstrap, strict=True):
            argv += ["--prefill", u, str(p)]
        for u in urls["decode"]:
            argv += ["--decode", u]
        policies, approximated = sglang_policy_args(dep.router)  # as the deployment was simulated (launch_routers.py)
        return Command(argv + policies + ["--host", "0.0.0.0", "--port", str(FRONT_PORT)],
                       comments=note + approximated)
    if family == "trtllm":
        context_router, generation_router, approximated = trtllm_router_blocks(dep.router)
        note += approximated
        files["disagg.yaml"] = yaml.safe_dump({
            "hostname": "0.0.0.0", "port": FRONT_PORT, "backend": "pytorch",
            "context_servers": {"num_instances": len(hosts["prefill"]), "urls": hosts["prefill"],
                                "router": context_router},
            "generation_servers": {"num_instances": len(hosts["decode"]), "urls": hosts["decode"],
                                   "router": generation_router}}, sort_keys=False)
        if nodes > 1:
            note.append("disagg.yaml's urls name the nodes node0, node1, ...: write each node's address there")
        return Command(["trtllm-serve", "disaggregated", "-c", "disagg.yaml"], comments=note)
    note += ["vLLM has no P/D router of its own: route with llm-d's inference scheduler (P/D disaggregation) or",
             "NVIDIA Dynamo: `python -m dynamo.frontend` with each worker as `python -m dynamo.vllm` (prefill",
             "workers with --is-prefill-worker); prefill " + " ".join(urls["prefill"]) + "; decode "
             + " ".join(urls["decode"]), dynamo_router_note(dep.router)]
    return Command([], comments=note)


def start_up_lines(dep: Deployment) -> list[str]:
    """Comment lines with each group's predicted start-up (perf/startup.py: a checkpoint in the page cache, no
    compile cache), for the health checks' and readiness probes' grace."""
    lines = []
    for gi, g in enumerate(dep.instances):
        cost, _, _, engine = build_group(dep, g, gi)
        lines.append(f"# Predicted start-up of a {g.role} instance: {startup_estimate(cost, engine).summary()} "
                     "(perf/startup.py): give health checks at least that")
    return lines


def launch_script(dep: Deployment, header: list[str], longest_request: int | None = None,
                  longest_prompt: int | None = None) -> tuple[str, dict[str, str]]:
    """A bash script starting every instance (and the disaggregated front end), and its config files: on a
    deployment over several nodes, the same script on each, run as `NODE=k ./launch.sh`, starting that node's. Its
    header says what the commands need of a later engine and what they run otherwise than simulated."""
    workers, front, files = launch_commands(dep, longest_request, longest_prompt)
    nodes = node_count(dep)
    where = ["# One command per instance, on each node of an instance wider than one; unmapped fields are comments"]
    if nodes > 1:
        names = " ".join(f"{NODE_VAR}{k}_ADDR" for k in range(nodes))
        where += [f"# {nodes} nodes: on node k (0-{nodes - 1}) run `{NODE_VAR}=k ./launch.sh` with {names} set to the "
                  "nodes' IP addresses; it starts node k's commands"]
    lines = ["#!/usr/bin/env bash", *[f"# {h}" for h in header],
             *[f"# {h}" for h in engine_lines(dep, [n for cmd in workers for n in cmd.needs])],
             *[f"# Not as simulated: {d}" for d in dict.fromkeys(d for cmd in workers for d in cmd.differs)], *where,
             f"# Deployment router policy planned: {dep.router} (the front end's / gateway's job)",
             *start_up_lines(dep), "set -euo pipefail", 'cd "$(dirname "$0")"']
    if nodes > 1:
        lines.append(": " + " ".join(f'"${{{v}:?set {v}: {what}}}"' for v, what in [
            (NODE_VAR, f"the number of this node, 0-{nodes - 1}")] + [
            (f"{NODE_VAR}{k}_ADDR", f"the IP address of node {k}") for k in range(nodes)]))  # no quote in a ${..:?}
    lines.append("")

    def start(cmd: Command, node: int) -> list[str]:
        if nodes == 1:
            return [cmd.line() + " &"]
        return [f'if [ "${NODE_VAR}" = {node} ]; then', f"  {cmd.line()} &", "fi"]

    for cmd in workers:
        lines += [f"# {c}" for c in cmd.comments] + start(cmd, cmd.node) + [""]
    if front is not None:
        lines += [f"# {c}" for c in front.comments]
        if front.argv:
            lines += start(front, 0)
        lines.append("")
    lines.append("wait")
    return "\n".join(lines) + "\n", files


def check_export_directory(directory: str | Path, model: str | None = None) -> None:
    """Before the search: --export's path is a directory, or nothing yet, that can be made and written (no file on
    its way, the nearest folder there writable: export.py check_output_path; the search's minutes would be lost to
    a refusal after it), and `model` (--model) is something the engines load (checkpoint_id: a config file not
    named config.json is refused)."""
    check_output_path(f"--export '{directory}'", directory, directory=True)
    if model is not None:
        checkpoint_id(model)


def write_export(result: PlanResult, directory: str | Path, rank: int = 1) -> list[Path]:
    """`plan --export DIR [--rank N]`: the rank-th strategy's deployment.yaml (simulate/serve --deployment read
    it unchanged), launch.sh for its engine, and the config files the commands read."""
    r = pick(result, rank)
    header = plan_header(result, r, rank)
    # the user's files by absolute path, in the script as in deployment.yaml (run from any folder)
    deployment = absolute_paths(r.strategy.deployment)
    dep = build_deployment(deployment, f"strategy '{r.strategy.name}'")
    lengths = result.replay_lengths  # one prompt and one output length: the longest request (else not known)
    script, files = launch_script(dep, header, None if lengths is None else sum(lengths),
                                  None if lengths is None else lengths[0])
    out = Path(directory).expanduser()  # '~' as check_export_directory reads it
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in {"deployment.yaml": deployment_yaml(deployment, header),
                           "launch.sh": script, **files}.items():
            path = out / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
        (out / "launch.sh").chmod(0o755)
    except OSError as exc:
        raise PhasewiseError(f"--export '{directory}': cannot write ({exc.strerror})") from None
    return written
