"""From the plan's answer to a deployment: `plan --export` writes a deployment YAML that `simulate --deployment`
reads unchanged and that serves the planned goodput; the launch commands parse against each engine's published
argument names (apps/data/engine_flags.yaml); an impossible SLO is one line and exit 1; the report is written
only when asked; the table fits an 80-column terminal with units in its headers."""

import argparse
import contextlib
import io
import json
import shlex
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from rich.console import Console

from phasewise.apps.launch import launch_commands, launch_script
from phasewise.apps.launch_args import engine_flags
from phasewise.apps.launch_nodes import placements
from phasewise.apps.plan_view import plan_table
from phasewise.errors import PhasewiseError
from phasewise.plan.goodput import WorkloadSpec, stable
from phasewise.plan.planner import REFINE
from phasewise.sim.deployment import build_deployment, load_deployment
from phasewise.specs.engines import deepep_fields
from phasewise.specs.hardware import load_hardware
from phasewise.workload import Workload

PLAN = ("plan", "--gpus", "1", "--tp-options", "1", "--chunk-sizes", "512", "--no-disagg", "--isl", "2048",
        "--osl", "256", "--top", "2", "--workers", "1", "--slo-ttft-ms", "1000", "--slo-tpot-ms", "50")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small plan through the CLI: its JSON and the export of the winner (the report is not asked for)."""
    from phasewise.apps import cli

    out = tmp_path_factory.mktemp("export")
    mp = pytest.MonkeyPatch()
    mp.chdir(out)
    mp.setattr("sys.argv", ["phasewise", *PLAN, "--json", "--export", str(out / "dep")])
    buf = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(buf):
            cli.main()
    except SystemExit as exc:
        code = exc.code
    finally:
        mp.undo()
    assert code in (0, None)
    return json.loads(buf.getvalue()), out


def test_export_round_trips_through_simulate_at_the_planned_goodput(exported, run_cli):
    d, out = exported
    winner = d["rows"][0]
    dep = out / "dep" / "deployment.yaml"
    assert yaml.safe_load(dep.read_text()) == winner["deployment"]  # the JSON row carries the same deployment
    assert load_deployment(str(dep)) == build_deployment(winner["deployment"])
    goodput, search = winner["goodput_rps"], winner["search_rps"]

    def attains(work: Workload, name: str) -> bool:
        """The plan's goodput criterion (attainment >= target with a bounded backlog, plan.goodput.stable) on the
        exported file through the CLI, the requests given as a trace file."""
        trace, runs = out / f"{name}.csv", out / name
        with trace.open("w") as f:
            f.write("arrived_at,num_prefill_tokens,num_decode_tokens\n")
            f.writelines(f"{float(a)!r},{p},{o}\n" for a, p, o in zip(work.arrival_s, work.prompt_tokens, work.output_tokens))
        code, _, err = run_cli("simulate", "--deployment", str(dep), "--trace", str(trace), "--slo-ttft-ms", "1000",
                               "--slo-tpot-ms", "50", "--out", str(runs))
        assert code == 0, err
        records = np.genfromtxt(runs / "requests.csv", delimiter=",", names=True)
        seats = [SimpleNamespace(role="collocated")]  # --no-disagg: one collocated instance seats the requests
        backlog = SimpleNamespace(arrival_s=records["arrival_s"],
                                  scheduled_s=records["arrival_s"] + records["queue_ms"] / 1e3, instances=seats)
        return json.loads((runs / "summary.json").read_text())["slo"]["attainment"] >= 0.9 and stable(backlog)

    # the plan's own request sample (its search's seed, REFINE's window) at each rate: the exported YAML through the
    # CLI must find the search's rate again (bisection, 8 steps) within 5 %; the verified goodput is at most that
    # (verification's longer windows and fresh seeds only step it down)
    spec = WorkloadSpec((2048,), (256,))

    def at(rate: float, name: str) -> bool:
        return attains(spec.at_rate(rate, int(max(REFINE["min_requests"], rate * REFINE["window_s"]))), name)

    lo, hi = 0.5 * search, 2.0 * search
    assert at(lo, "lo") and not at(hi, "hi")
    for step in range(8):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if at(mid, f"mid{step}") else (lo, mid)
    assert lo == pytest.approx(search, rel=0.05) and goodput <= search
    # and on fresh random numbers (another seed), the planned goodput still meets the SLOs
    assert attains(replace(spec, seed=7).at_rate(goodput, 600), "fresh")
    assert not (out / "phasewise-report.html").exists()  # no --report, no report


def test_export_script_launches_the_winner(exported):
    _, out = exported
    script = (out / "dep" / "launch.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash") and "vllm serve meta-llama/Llama-3.1-8B" in script
    assert "planned goodput" in script and "--tensor-parallel-size 1" in script
    assert "# Predicted start-up of a collocated instance: 49 s: weights 3.0 s (16.1 GB)" in script  # perf/startup.py


def test_impossible_slo_is_one_line_and_exit_1(run_cli):
    code, out, err = run_cli(*PLAN[:-4], "--top", "1", "--slo-ttft-ms", "1", "--slo-tpot-ms", "50")
    assert code == 1 and out.strip() == ""
    assert err.count("\n") == 1 and "no strategy meets TTFT <= 1 ms" in err
    assert "closest:" in err and "TTFT <= 1 ms binds" in err and "nan" not in err


def test_rank_out_of_range_is_a_one_line_error(run_cli):
    code, _, err = run_cli("plan", "--rank", "0", "--export", "x")
    assert code == 2 and "--rank must be >= 1" in err and err.count("\n") == 1


def test_an_export_onto_a_file_is_refused_before_the_search(run_cli, tmp_path, monkeypatch):
    """It was refused only after the search (minutes on a large plan) had run and printed its table."""
    path = tmp_path / "afile"
    path.write_text("")
    monkeypatch.setattr("phasewise.plan.plan", lambda *a, **k: pytest.fail("the search ran"))
    code, out, err = run_cli(*PLAN, "--export", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1 and "a file of that name exists" in err


def test_an_export_into_a_used_directory_names_the_files_it_did_not_write(run_cli, tmp_path):
    """A vLLM export over an earlier TensorRT-LLM one left its disagg.yaml there unsaid."""
    (tmp_path / "disagg.yaml").write_text("stale: true\n")
    code, _, err = run_cli(*PLAN, "--top", "1", "--export", str(tmp_path))
    assert code == 0 and f"note: {tmp_path} also holds disagg.yaml, not written by this export" in err
    assert (tmp_path / "launch.sh").is_file() and (tmp_path / "disagg.yaml").is_file()  # nothing deleted


def test_a_tbt_deadline_adds_its_column(run_cli):
    """A "decode (every TBT)" binding had no figure in the table; with --slo-tbt-ms the TBT p99 column is there."""
    code, out, _ = run_cli(*PLAN, "--top", "1", "--slo-tbt-ms", "100", "--json")
    assert code == 0 and "tbt_p99_ms" in json.loads(out)["rows"][0]
    code, out, _ = run_cli(*PLAN, "--top", "1", "--slo-tbt-ms", "100")
    assert code == 0 and "TBT p99" in out
    code, out, _ = run_cli(*PLAN, "--top", "1")
    assert code == 0 and "TBT p99" not in out


def test_a_tp_that_divides_no_layout_is_refused_without_a_multi_node_hint(run_cli):
    """Llama-3.1-8B fits one GPU: the hint to plan two nodes misled, and the reason stood twice (collocated and
    disaggregated pruned alike)."""
    code, _, err = run_cli("plan", "--workers", "1", "--tp-options", "3")
    assert code == 2 and err.count("\n") == 1 and err.count("does not divide num_attention_heads") == 1
    assert "choose --tp-options among the allowed values" in err and "node" not in err.split(");")[-1]


def _parser(spec: dict) -> argparse.ArgumentParser:
    """An argument parser accepting exactly the published flags, with their value types and choices."""
    p = argparse.ArgumentParser(add_help=False, exit_on_error=False, allow_abbrev=False)
    p.add_argument("model", nargs="?")
    kinds = {"int": int, "float": float, "str": str, "json": json.loads}
    for flag, f in spec["flags"].items():
        if f["takes"] == "flag":
            p.add_argument(flag, action="store_true")
        else:
            choices = [str(c) if c is not None else "null" for c in f["choices"]] if "choices" in f else None
            p.add_argument(flag, type=kinds[f["takes"]] if not choices else str, choices=choices,
                           action="append" if f.get("repeat") else "store", nargs=f.get("nargs"))
    return p


class _Fail(Exception):
    pass


def _parse(spec: dict, argv: list[str]):
    p = _parser(spec)
    p.error = lambda message: (_ for _ in ()).throw(_Fail(message))  # unknown or bad arguments raise
    return p.parse_args(argv)


M, MOE = "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B"
DEPLOYMENTS = {
    "collocated": {"model": M, "instances": [{"tp": 2, "replicas": 2, "max_num_seqs": 128,
                                              "enable_chunked_prefill": True, "max_num_batched_tokens": 2048}]},
    # MiMo-7B's one MTP layer drafts (Llama-3.1-8B has none: sim/deployment_model_checks.py mtp_draft_refusal)
    "fp8": {"model": "XiaomiMiMo/MiMo-7B-Base", "instances": [{"tp": 1, "precision": "fp8", "kv_dtype": "fp8",
                                                              "prefix_caching": False}],
            "speculative": {"draft_tokens": 3, "acceptance": 0.7}},
    "moe": {"model": MOE, "instances": [{"tp": 4, "ep": 4, "attention_dp": 4}]},
    "moe-partial": {"model": MOE, "instances": [{"tp": 4, "ep": 2, "moe_tp": 2}]},
    "host-tier": {"model": M, "instances": [{"tp": 2, "host_kv_cache_bytes": 64e9}]},
    "disagg": {"model": M, "kv_link": "rdma", "instances": [{"role": "prefill", "tp": 1, "replicas": 2},
                                                             {"role": "decode", "tp": 2, "replicas": 1}]},
    # DeepEP's all-to-all over two 8-GPU nodes (attention DP 16 x EP 16): `deepep` is the engine's DeepEP knob as a
    # planner sets it (specs/engine_deepep.py deepep_fields: vLLM's --all2all-backend, SGLang's --moe-a2a-backend), whose
    # flags the published list once lacked
    "deepep": {"model": MOE, "instances": [{"hardware": "h100-sxm", "tp": 16, "ep": 16, "attention_dp": 16,
                                            "deepep": True}]},
}
ENGINE_KNOBS = {"vllm": {"async_scheduling": True},
                "sglang": {"max_running_requests": 128, "chunked_prefill_size": 4096,
                           "enable_piecewise_cuda_graph": True, "piecewise_cuda_graph_max_tokens": 8192},
                "trtllm": {"max_batch_size": 128, "max_num_tokens": 4096, "enable_chunked_prefill": True,
                           "cuda_graph_max_batch_size": 64, "cuda_graph_padding_enabled": True,
                           "attention_dp_enable_balance": True, "attention_dp_timeout_iters": 60,
                           "attention_dp_batching_wait_iters": 0, "batch_wait_timeout_iters": 8,
                           "batch_wait_max_tokens_ratio": 0.4}}
PREFIX = {"vllm": ["vllm", "serve"], "sglang": ["python", "-m", "sglang.launch_server"], "trtllm": ["trtllm-serve"]}


# TensorRT-LLM balances attention-DP ranks only with attention DP and batch-waits only without (specs/engine_knob_checks.py
# refuse_idle_knobs): each group gets the waiting knobs its layout reads
ADP_BALANCE = ("attention_dp_enable_balance", "attention_dp_timeout_iters", "attention_dp_batching_wait_iters")
BATCH_WAIT = ("batch_wait_timeout_iters", "batch_wait_max_tokens_ratio")


def _with_engine(data: dict, engine: str) -> dict:
    def knobs(group: dict) -> dict:
        unread = BATCH_WAIT if (group.get("attention_dp") or 1) > 1 else ADP_BALANCE
        return {k: v for k, v in ENGINE_KNOBS[engine].items() if k not in unread}

    groups = [{k: v for k, v in g.items() if k not in ("max_num_seqs", "enable_chunked_prefill",
                                                        "max_num_batched_tokens", "deepep")} | {"engine": engine}
              | knobs(g) | (deepep_fields(engine, g.get("role", "collocated")) if g.get("deepep") else {})
              for g in data["instances"]]
    return dict(data, instances=groups)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
@pytest.mark.parametrize("case", list(DEPLOYMENTS))
def test_launch_commands_parse_against_published_flags(engine, case):
    flags = engine_flags()[engine]
    if engine == "vllm" and case == "moe-partial":  # vLLM's EP spans the instance: refused (test_moe_review_fixes.py)
        with pytest.raises(PhasewiseError, match="--ep 2 is not possible on engine 'vllm'"):
            build_deployment(_with_engine(DEPLOYMENTS[case], engine))
        return
    if engine == "trtllm" and case == "deepep":  # no DeepEP knob (it chooses its own all-to-all); its multi-node
        return  # launch, one mpirun, is test_launch_multinode.py's
    dep = build_deployment(_with_engine(DEPLOYMENTS[case], engine))
    workers, front, files = launch_commands(dep)
    nodes = [len(p.nodes) for group in placements(dep) for p in group]  # an instance wider than a node: one per node
    assert len(workers) == sum(nodes)
    for cmd in workers:
        assert cmd.argv[:len(PREFIX[engine])] == PREFIX[engine]
        args = _parse(flags, cmd.argv[len(PREFIX[engine]):])
        g = dep.instances[0] if len(dep.instances) == 1 else next(
            g for g in dep.instances if any(g.role in c for c in cmd.comments[:1]))
        tp = {"vllm": "tensor_parallel_size", "sglang": "tp_size", "trtllm": "tp_size"}[engine]
        dp = getattr(args, "data_parallel_size", None) or 1 if engine == "vllm" else 1
        assert int(getattr(args, tp)) * dp == g.tp  # the GPUs of the instance
        span = -(-g.tp // load_hardware(g.hardware).interconnect.gpus_per_node)  # its nodes: a command on each
        assert len(cmd.env["CUDA_VISIBLE_DEVICES"].split(",")) * span == g.tp and set(cmd.env) <= set(flags["env"])
        for knob, value in deepep_fields(engine, g.role).items():  # the DeepEP choice, as the engine parses it
            assert getattr(args, knob, None) == (value if knob in g.knobs else None), (knob, cmd.argv)
    if engine == "trtllm":  # the LLM-API options and the disaggregated server config use the published keys
        api = flags["llm_api_options"]
        options = [yaml.safe_load(text) for name, text in files.items() if name != "disagg.yaml"]
        assert all(o["cuda_graph_config"] == {"max_batch_size": 64, "enable_padding": True} for o in options)
        assert all(o["attention_dp_config"] == {"enable_balance": True, "timeout_iters": 60, "batching_wait_iters": 0}
                   if o.get("enable_attention_dp") else o["batch_wait_timeout_iters"] == 8 for o in options)
        # context servers run without the overlap scheduler, as phasewise simulates them (engine_presets.yaml)
        for name, text in files.items():
            if name != "disagg.yaml":
                assert yaml.safe_load(text).get("disable_overlap_scheduler", False) == ("prefill" in name), name
        for name, text in files.items():
            options = yaml.safe_load(text)
            keys = flags["disaggregated"]["keys"] if name == "disagg.yaml" else api
            assert set(options) <= set(keys), (name, options)
            for key, value in options.items():
                if isinstance(value, dict) and name != "disagg.yaml":
                    assert set(value) <= set(api[key]["keys"]), (key, value)
                if name == "disagg.yaml" and key.endswith("_servers"):
                    assert set(value) <= set(flags["disaggregated"]["server_keys"])
    if dep.disaggregated:
        assert front is not None
        if engine == "sglang":  # each prefill server's URL with its own bootstrap port (sgl-router's URL PORT)
            args = _parse(flags["router"], front.argv[3:])
            assert len(args.prefill) == 2 and len(args.decode) == 1
            ports = [_parse(flags, c.argv[3:]).disaggregation_bootstrap_port for c in workers if "prefill" in c.argv]
            assert [int(p) for _, p in args.prefill] == ports and len(set(ports)) == 2
        roles = [a for c in workers for a in c.argv if a in ("prefill", "decode")]
        kv = {"vllm": '"kv_connector":"NixlConnector"', "sglang": "--disaggregation-transfer-backend",
              "trtllm": "cache_transceiver_config"}[engine]
        assert kv in " ".join(shlex.join(c.argv) for c in workers) + "".join(files.values())
        if engine == "sglang":
            assert roles.count("prefill") == 2 and roles.count("decode") == 1


def test_twin_serves_the_exported_deployment(exported):
    """`serve --deployment` reads the exported file as `simulate --deployment` does, and answers a request."""
    pytest.importorskip("uvicorn")
    import httpx
    from conftest import serving

    from phasewise.apps.tokenizer import Tokenizer
    from phasewise.apps.twin import LiveSim, create_app
    from phasewise.sim.api import deployment_from_flags

    _, out = exported
    dep = deployment_from_flags(deployment=str(out / "dep" / "deployment.yaml"))
    with serving(create_app(LiveSim(dep), dep.model, Tokenizer())) as url:
        r = httpx.post(url + "/v1/completions", json={"model": dep.model, "prompt": "hello", "max_tokens": 3},
                       timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


def test_unmapped_fields_are_comment_lines():
    vllm = build_deployment(DEPLOYMENTS["fp8"])  # a partial EP, once a vLLM comment line, is refused on vLLM now
    script, _ = launch_script(vllm, ["header"])
    assert "# " in script and "is the workload's, not an argument" in script
    trt = build_deployment(_with_engine({"model": MOE, "instances": [{"tp": 4, "ep": 4, "attention_dp": 2}]},
                                        "trtllm"))
    script, files = launch_script(trt, [])
    assert "a partial one has no argument" in script and "enable_attention_dp: true" in "".join(files.values())
    fp8 = build_deployment(_with_engine(DEPLOYMENTS["fp8"], "trtllm"))
    assert "no online quantization" in launch_script(fp8, [])[0]


def test_table_fits_80_columns_with_units_and_the_whole_objective(exported):
    from phasewise.plan import PlanOptions, WorkloadSpec, plan
    from phasewise.sim import Slo

    res = plan(M, "h100-sxm", 1, Slo(1000, 50), WorkloadSpec((2048,), (256,)), refine=1, workers=1,
               objective="goodput-per-dollar", opts=PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False))
    console = Console(width=80, record=True, color_system=None)
    console.print(plan_table(res, console.width))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "goodput-per-dollar" in text and "(req/$)" in text and "req/s" in text and "…" not in text
    wide = Console(width=160, record=True, color_system=None)
    wide.print(plan_table(res, wide.width))
    assert "tok/s/GPU" in wide.export_text() and "tok/s/GPU" not in text


@pytest.mark.parametrize("engine, flag", [("vllm", "--gpu-memory-utilization"), ("sglang", "--mem-fraction-static"),
                                          ("trtllm", "free_gpu_memory_fraction")])
def test_memory_fraction_is_written_only_when_the_deployment_sets_one(engine, flag):
    """Without memory_fraction the engine keeps its own default, as the simulation does (SGLang computes its own)."""
    plain = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "engine": engine}]}
    script, files = launch_script(build_deployment(plain), [])
    assert flag not in script + "".join(files.values())
    set_ = dict(plain, instances=[dict(plain["instances"][0], memory_fraction=0.8)])
    script, files = launch_script(build_deployment(set_), [])
    assert flag in script + "".join(files.values()) and "0.8" in script + "".join(files.values())


def test_vllm_is_told_a_max_model_len_only_where_the_models_context_does_not_fit():
    """vLLM refuses to start when one sequence of the model's whole context (Llama 4 Scout: 10,485,760 tokens) does
    not fit the KV cache; the script then caps --max-model-len at the longest sequence the cache holds. Scout's
    chunked local attention turns vLLM's hybrid KV cache manager off, so each of its 48 layers holds every token:
    4 full-layer tokens' worth per token (12 full + 36 chunked layers). Llama-3.1-8B's 131,072 fit one H100: no
    flag."""
    from phasewise.sim.simulate import build_group

    flags = engine_flags()["vllm"]
    scout = build_deployment({"model": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
                              "instances": [{"hardware": "h100-sxm", "tp": 4, "ep": 4, "engine": "vllm"}]})
    (cmd,), _, _ = launch_commands(scout)
    args = _parse(flags, cmd.argv[len(PREFIX["vllm"]):])
    _, kv_tokens, _, _ = build_group(scout, scout.instances[0], 0)
    assert int(args.max_model_len) == kv_tokens // 4 // 16 * 16 < 10_485_760
    assert any("--max-model-len caps it" in c for c in cmd.comments)
    small = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [{"hardware": "h100-sxm"}]})
    (cmd,), _, _ = launch_commands(small)
    assert "--max-model-len" not in cmd.argv


def test_a_sliding_window_models_max_model_len_passes_vllms_own_start_up_check():
    """vLLM charges a windowed layer min(window - 1 + max_num_batched_tokens, max_model_len) tokens and a block
    (SlidingWindowSpec.max_memory_usage_bytes), not its window: gpt-oss-120b on an H100 at a 0.8 memory fraction
    holds 7,422 tokens, and half its layers windowed at 128 still take a whole length each below ~8.3k tokens, so
    the longest is ~3.7k (7,280 was written, which vLLM refuses at start)."""
    from phasewise.sim.simulate import build_group

    flags = engine_flags()["vllm"]
    dep = build_deployment({"model": "openai/gpt-oss-120b",
                            "instances": [{"hardware": "h100-sxm", "engine": "vllm", "memory_fraction": 0.8}]})
    (cmd,), _, _ = launch_commands(dep)
    longest = int(_parse(flags, cmd.argv[len(PREFIX["vllm"]):]).max_model_len)
    _, kv_tokens, _, engine = build_group(dep, dep.instances[0], 0)
    reach = (-(-(128 - 1 + engine.token_budget) // 16) + 1) * 16  # each windowed layer's blocks, in tokens
    assert reach > longest and 2 * longest <= kv_tokens < 2 * (longest + 16)  # 18 full + 18 windowed layers


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_launch_scripts_load_the_checkpoint_a_short_alias_names(engine):
    """A catalog short alias is the planner's name, not a repository: the script loads the entry's Hugging Face id;
    an alias that is a repository of its own (the -FP8 checkpoint) is loaded as given."""
    for model, loaded in (("nemotron-3-nano", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"),
                          ("Qwen/Qwen3.5-397B-A17B-FP8", "Qwen/Qwen3.5-397B-A17B-FP8")):
        dep = build_deployment({"model": model, "instances": [{"hardware": "b200", "tp": 8, "engine": engine}]})
        (cmd,), _, _ = launch_commands(dep)
        assert loaded in cmd.argv and model.lower() not in {arg.lower() for arg in cmd.argv} - {loaded.lower()}


@pytest.mark.parametrize("engine, expected", [
    ("vllm", {}),
    ("sarathi", {"max_num_seqs": 256, "max_num_batched_tokens": 512}),
    ("ascendra-lp", {"max_num_seqs": 256, "max_num_batched_tokens": 1024}),
])
def test_a_preset_launched_with_vllm_runs_with_its_simulated_caps(engine, expected):
    """`vllm serve` with no flags runs vLLM's own defaults (1,024 sequences, 8,192 tokens on an H100): a preset of
    another scheduler writes the caps it was simulated with, or the launched server is not the one planned.
    Sarathi's many partial prefills are not among them: vLLM 0.14 refuses --max-num-partial-prefills above 1."""
    flags = engine_flags()["vllm"]
    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [{"hardware": "h100-sxm",
                                                                               "engine": engine}]})
    (cmd,), _, _ = launch_commands(dep)
    args = vars(_parse(flags, cmd.argv[len(PREFIX["vllm"]):]))
    for name in ("max_num_seqs", "max_num_batched_tokens"):
        assert args.get(name) == expected.get(name), (name, cmd.argv)
    assert "--max-num-partial-prefills" not in cmd.argv


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a_bf16_plan_on_a_quantized_checkpoint_says_to_serve_a_bf16_one(engine):
    """--dtype bfloat16 does not dequantize an FP8 checkpoint (the engine reads its quantization config), and a
    --quantization differing from the checkpoint's is refused: the script says which checkpoint to serve."""
    said = "on a fp8-block checkpoint: serve a bf16 checkpoint of the model as MODEL"
    for precision in ("bf16", "fp8"):
        dep = build_deployment(_with_engine({"model": "deepseek-ai/DeepSeek-R1",
                                             "instances": [{"tp": 8, "ep": 8, "precision": precision,
                                                            "hardware": "b200"}]}, engine))
        assert said in launch_script(dep, [])[0], precision
    native = build_deployment(_with_engine({"model": "deepseek-ai/DeepSeek-R1",
                                                         "instances": [{"tp": 8, "ep": 8, "hardware": "b200"}]}, engine))
    quantized = build_deployment(_with_engine({"model": M, "instances": [{"tp": 1, "precision": "fp8"}]}, engine))
    assert "serve a bf16 checkpoint" not in launch_script(native, [])[0] + launch_script(quantized, [])[0]


def test_a_trace_past_the_models_context_is_planned_as_the_engine_serves_it(run_cli, tmp_path):
    """Llama-2-7B (4,096 tokens) on the Azure code trace: 13.9 % of its requests pass the context, which the engine
    (and `simulate`) refuses: at a 90 % target the plan says they put it out of reach; at 80 % the exported
    deployment, simulated on the same trace at the planned rate, attains what the plan verified (the plan ran them
    as served, 90.7 % against simulate's 86.2 %)."""
    flags = ["--model", "meta-llama/Llama-2-7b-hf", "--gpus", "1", "--workload", "azure-code", "--arrivals", "trace",
             "--slo-ttft-ms", "2000", "--slo-tpot-ms", "100", "--tp-options", "1", "--no-disagg"]
    code, out, err = run_cli("plan", *flags)
    assert code == 1 and "13.9% of the workload's requests pass the model's context and are refused" in out + err
    code, out, err = run_cli("plan", *flags, "--attainment", "0.8", "--export", str(tmp_path), "--json")
    assert code == 0, err
    winner = json.loads(out)["rows"][0]
    code, out, err = run_cli("simulate", "--deployment", str(tmp_path / "deployment.yaml"), "--trace", "azure-code",
                             "--rate", repr(winner["goodput_rps"]), "--slo-ttft-ms", "2000", "--slo-tpot-ms", "100",
                             "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rejected_by"]["beyond_context"] > 0
    assert summary["slo"]["attainment"] == pytest.approx(winner["verified_attainment"], abs=1e-9)
