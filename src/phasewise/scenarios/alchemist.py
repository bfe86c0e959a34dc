"""Alchemist-1 (PAPERS.md section 10): online continual learning beside serving, reusing the activations serving's
prefill recorded instead of recomputing the trainer's forward.

Method: one collocated instance serves a ShareGPT-like open loop; `feedback_share` of the served requests become
training samples (their prompts, as the paper's inputs) for a trainer on the same GPU (time-sliced), whose steps
perf/training.py costs. The same serving load runs with the trainer recomputing its forward (the baseline), keeping
the recorded activations on the GPU, and offloading them to host memory (Alchemist's offloading: freed in forward
order, reloaded in backward order). Training throughput is tokens per second of the trainer's own time (its
capacity: how fast it trains what feedback brings), measured over the simulated steps; memory is the trainer's peak
per GPU (grads and optimizer state + the activations resident at once). Recording's cost to serving is measured
with the trainer on a GPU of its own (the paper's "separate training cluster"), so that only the recording differs
from serving alone. A sweep over the feedback share gives the report the issue asks: training throughput and
serving TTFT/TPOT vs feedback rate, colocated.
"""

from __future__ import annotations

import statistics
from typing import Any

import plotly.graph_objects as go

from phasewise.errors import PhasewiseError
from phasewise.scenarios.base import Check, Outcome, Param, Scenario, autoregressive, lengths_within_context
from phasewise.sim.api import build
from phasewise.sim.deployment import build_deployment
from phasewise.sim.metrics import SimResult
from phasewise.sim.online_training import HOST_LINKS
from phasewise.sim.simulate import simulate
from phasewise.specs import load_model
from phasewise.workload import MAX_LOGNORMAL_SPREAD

SHAREGPT = "ShareGPT as the vLLM paper reports it (Kwon et al., SOSP'23, Fig. 11a: mean input 161, output 338)"
SETUP = {
    "model": Param("meta-llama/Llama-3.1-8B", "assumed: an 8B Llama (the paper's models are not accessible; "
                                              "PAPERS.md section 10 names none)"),
    "hardware": Param("h100-sxm", "assumed: one H100 SXM (the paper's GPUs are not accessible)"),
    "tp": Param(4, "assumed: full fine-tuning of an 8B with AdamW holds ~14 B of grads and fp32 state per parameter "
                   "(~112 GB): four H100s share it by tensor parallelism, and serve"),
    "method": Param("full", "assumed: full fine-tuning (PAPERS.md's redundant share f = 0.30-0.42 with speedup "
                            "1/(1-f) implies a backward of ~1.4-2.3x the forward, as full fine-tuning's 2x GEMM "
                            "backward gives; LoRA's frozen weights need ~1x)", choices=("full", "lora")),
    "lora_rank": Param(16, "assumed: a common LoRA rank (Hu et al. 2021 use 1-64)"),
    "train_batch_tokens": Param(8192, "assumed: a small online batch (PAPERS.md: 'iteratively training the model "
                                      "with small batches of user feedback')"),
    "feedback_share": Param(0.2, "assumed: one served request in five gets feedback (no public rate)", upper=1.0),
    # at most 10x the default's 4 shares: two simulations each
    "sweep_shares": Param([0.05, 0.1, 0.2, 0.4], "assumed: feedback shares of the report (training throughput and "
                                                 "serving latency vs feedback rate)", upper=1.0, items=(1, 40)),
    "keep_layers": Param(-1, "PAPERS.md section 10: hedging (-1: the simulator's default, the fewest layers kept on "
                             "the GPU whose reload then hides behind the backward; N >= 0: N layers)", lower=-1),
    "host_link": Param("pcie", "PAPERS.md section 10: activations offloaded to host memory (over the host link, "
                               "PCIe); nvlink: to a peer GPU's memory, the issue's other link",
                       choices=HOST_LINKS,
                       help="the link offload copies recordings over and reloads them from"),
    "prompt_tokens": Param(161.0, f"PAPERS.md section 10: ShareGPT-sampled inputs; {SHAREGPT}", upper=32768.0),
    "output_tokens": Param(338.0, f"{SHAREGPT}", upper=4096.0),
    "length_sigma": Param(0.8, "assumed: lognormal lengths with ShareGPT's long tail (sigma of log length)",
                          upper=MAX_LOGNORMAL_SPREAD),
    "rate": Param(6.0, "assumed: a moderate load for one H100 serving an 8B model (well below its capacity)"),
    # at most 10x the default: every simulation grows linearly with its requests
    "requests": Param(1200, "assumed: enough requests for a few training steps at each of the sweep's shares (1, "
                            "2, 4 and 9 at 5, 10, 20 and 40 %: a step waits for train_batch_tokens of feedback; tens "
                            "at 5 % would take 20x the requests and as many times the seconds), within the scenario's "
                            "time", upper=12000),
    "seed": Param(0, "assumed"),
}
MODES = ("recompute", "keep", "offload")
RECORDING_SEEDS = 8  # arrival seeds the recording overhead is averaged over (paired runs; see run())
# The recording check's room below 0 (%). Recording only adds work, but it lengthens the prefill iterations that
# record, and an iteration ending later changes which iteration each later arrival waits behind and what joins it:
# a pair of runs on the same arrivals differs by up to ~1 % either way (per-pair sd 0.3-0.7 % over the feedback
# shares 0.05-1, rates 2-20 req/s and both methods), the mean of RECORDING_SEEDS pairs by ~0.2 % (one sd). With the
# recording's cost zero the pair is identical (tests/test_online_training.py), so a mean below 0 is that shift, not
# a speed-up; -1 % is about four of its sds.
ALIGNMENT_SHIFT_PCT = 1.0


def _run(setup: dict[str, Any], training: dict | None) -> SimResult:
    spec = build(model=setup["model"], hardware=setup["hardware"], tp=setup["tp"], rate=setup["rate"],
                 requests=setup["requests"], isl=setup["prompt_tokens"], osl=setup["output_tokens"],
                 isl_dist="lognormal", osl_dist="lognormal", isl_spread=setup["length_sigma"],
                 osl_spread=setup["length_sigma"], seed=setup["seed"])
    data = spec.deployment.model_dump()
    if training is not None:
        data["online_training"] = training
    return simulate(build_deployment(data), spec.workload, spec.slo)


def _block(setup: dict[str, Any], reuse: str, share: float | None = None, placement: str = "colocated") -> dict:
    block = {"method": setup["method"], "reuse": reuse, "sample": "prompt",
             "feedback_share": setup["feedback_share"] if share is None else share,
             "train_batch_tokens": setup["train_batch_tokens"], "placement": placement}
    if setup["method"] == "lora":
        block["lora_rank"] = setup["lora_rank"]
    if reuse == "offload":
        block["host_link"] = setup["host_link"]
        if setup["keep_layers"] >= 0:
            block["keep_layers"] = setup["keep_layers"]
    return block


def _figures(result: SimResult) -> dict[str, Any]:
    s = result.summary()
    return {"ttft_ms": s["ttft_ms"]["mean"], "tpot_ms": s["tpot_ms"]["mean"], "training": s["policy"].get(
        "online_training")}


def validate(setup: dict[str, Any]) -> None:
    """Before anything runs: the mean request within the model's context (each value's range is its Param's)."""
    autoregressive("alchemist", "model", setup["model"])
    lengths_within_context("alchemist", setup["model"], setup["prompt_tokens"], setup["output_tokens"])


def run(setup: dict[str, Any]) -> Outcome:
    alone = _figures(_run(setup, None))
    modes = {mode: _figures(_run(setup, _block(setup, mode))) for mode in MODES}
    # forward-order freeing at its best: every layer offloaded (no hedging), for the memory figure
    every_layer = _figures(_run(setup, {**_block(setup, "offload"), "keep_layers": 0}))
    freeing = every_layer["training"]
    recording = _figures(_run(setup, _block(setup, "offload", placement="separate")))
    base, keep, off = (modes[m]["training"] for m in MODES)
    if not base["steps"] or not off["steps"]:
        raise PhasewiseError(f"reproduce alchemist: no training step ran (feedback {setup['feedback_share']:g} of "
                             f"{setup['requests']} requests does not fill a batch of {setup['train_batch_tokens']} "
                             "tokens): raise requests or feedback_share")
    slowest = base["training_tokens_per_trainer_s"]
    gain = off["training_tokens_per_trainer_s"] / slowest
    keep_gain = keep["training_tokens_per_trainer_s"] / base["training_tokens_per_trainer_s"]
    memory = freeing["peak_training_bytes"] / base["peak_training_bytes"]
    # the recording's overhead is a fraction of a percent, as large as the shift of iteration boundaries it causes
    # (ALIGNMENT_SHIFT_PCT): the mean of the paired differences over RECORDING_SEEDS arrival seeds, each pair the
    # same arrivals and lengths (common random numbers), so that only the recording differs within a pair
    paired = [(alone["ttft_ms"], recording["ttft_ms"])]
    for offset in range(1, RECORDING_SEEDS):
        other = {**setup, "seed": setup["seed"] + offset}
        paired.append((_figures(_run(other, None))["ttft_ms"],
                       _figures(_run(other, _block(other, "offload", placement="separate")))["ttft_ms"]))
    differences = [100.0 * (rec / base - 1.0) for base, rec in paired]
    overhead = statistics.fmean(differences)
    gib = 2 ** 30
    kept_all = off["keep_layers"] == load_model(setup["model"]).num_layers  # every layer kept: keep's run
    checks = [
        Check(f"training throughput gain: {_offload_run(setup, off)} vs recompute",
              "reusing serving's activations raises training throughput up to 1.72x (PAPERS.md: 1/(1-f) for a "
              "redundant forward share f of 0.30-0.42)", [1.43, 1.72], gain, (1.43, 1.72),
              f"{setup['method']}: {off['training_tokens_per_trainer_s']:,.0f} vs "
              f"{base['training_tokens_per_trainer_s']:,.0f} training tokens per second of trainer time over "
              f"{off['steps']} / {base['steps']} simulated steps at {setup['rate']:g} req/s (keep: {keep_gain:.2f}x); "
              f"{off['keep_layers']} layers kept on the GPU, leaving {off['step_s']['reload']:.3f} s of reload "
              f"exposed in all" + ("; every layer kept, the offload step is keep's and holds as much memory as "
                                   "recompute's: the memory check runs every layer offloaded" if kept_all else "")),
        Check("redundant forward share of the training step",
              "the trainer's recomputed forward is 30-42 % of its step", [0.30, 0.42], base["forward_share"],
              (0.30, 0.42),
              f"forward {base['step_s']['forward']:.2f} s, backward {base['step_s']['backward']:.2f} s, optimizer "
              f"{base['step_s']['optimizer']:.2f} s over the recompute trainer's steps ({setup['method']}, batches "
              f"of <= {setup['train_batch_tokens']} tokens)"),
        Check("peak training memory (offload vs recompute)",
              "freeing activations in forward order and reloading them in backward order cuts training memory "
              "by up to 47 % (<= 0.53x)", 0.53, memory, (0.35, 0.60),
              f"per GPU, every layer offloaded: {freeing['peak_training_bytes'] / gib:.2f} GiB vs "
              f"{base['peak_training_bytes'] / gib:.2f} GiB (grads and optimizer state "
              f"{base['weight_state_bytes'] / gib:.2f} GiB in both; activations "
              f"{freeing['peak_activation_bytes'] / gib:.2f} vs {base['peak_activation_bytes'] / gib:.2f} GiB); "
              f"its training throughput {freeing['training_tokens_per_trainer_s'] / slowest:.2f}x the recompute "
              f"trainer's (reload exposed over {freeing['host_link']}); the throughput check's run, "
              f"{off['keep_layers']} layers kept: {off['peak_training_bytes'] / gib:.2f} GiB "
              f"({off['peak_training_bytes'] / base['peak_training_bytes']:.2f}x)"),
        Check("serving TTFT overhead of activation recording (%)",
              "recording prefill activations costs serving negligible latency (<= 5 %)", 5.0, overhead,
              (-ALIGNMENT_SHIFT_PCT, 5.0),
              f"mean of {len(paired)} paired runs (arrival seeds {setup['seed']}..{setup['seed'] + len(paired) - 1}, "
              f"each pair the same arrivals and lengths; the pairs' sd {statistics.stdev(differences):.2f} %): "
              f"recording only lengthens the prefill iterations that record, but an iteration ending later moves "
              f"which iteration each later arrival waits behind, a shift of either sign (down to "
              f"-{ALIGNMENT_SHIFT_PCT:g} % it is that, not a speed-up); "
              f"seed {setup['seed']}: mean TTFT {recording['ttft_ms']:.2f} ms recording (offload, trainer on its own "
              f"GPU) vs {alone['ttft_ms']:.2f} ms serving alone; "
              f"{recording['training']['recorded_bytes'] / gib:.1f} GiB "
              f"recorded in {recording['training']['recording_s']:.2f} s of prefill time, their copies to host "
              f"keeping the link {recording['training']['record_link_utilization']:.1%} busy"),
    ]
    sweep = {mode: [(share, modes[mode] if share == setup["feedback_share"] else
                     _figures(_run(setup, _block(setup, mode, share)))) for share in setup["sweep_shares"]]
             for mode in ("recompute", "offload")}
    report = {"title": "Training throughput and serving latency vs feedback share (trainer colocated, time-sliced)",
              "columns": ["feedback share", "trainer", "steps", "trained tok/s", "tok/s of trainer time",
                          "mean TTFT ms", "mean TPOT ms"],
              "rows": [[share, mode, f["training"]["steps"], round(f["training"]["training_tokens_per_s"]),
                        round(f["training"]["training_tokens_per_trainer_s"]), round(f["ttft_ms"], 2),
                        round(f["tpot_ms"], 2)] for mode, points in sweep.items() for share, f in points]}
    runs = _labelled(setup, modes, every_layer)
    return Outcome(checks, _plots(sweep, alone, runs), [_table(alone, runs, recording), report])


def _labelled(setup: dict[str, Any], modes: dict, every_layer: dict) -> dict[str, dict]:
    """The colocated trainer runs the step, memory and per-mode figures show, each named by what it ran: the
    offload run as hedged (its layers kept on the GPU) and the every-layer-offloaded run the memory check compares."""
    layers = load_model(setup["model"]).num_layers
    return {"recompute": modes["recompute"], "keep (on the GPU)": modes["keep"],
            _offload_run(setup, modes["offload"]["training"]): modes["offload"],
            f"offload, every layer offloaded (0 of {layers} kept; the memory check)": every_layer}


def _offload_run(setup: dict[str, Any], training: dict) -> str:
    """What the offload run ran: how many layers it kept on the GPU, and who chose them (the hedge, for its host
    link: the fewest whose reload hides behind the backward of the layers before them)."""
    layers = load_model(setup["model"]).num_layers
    how = f"by the hedge over {training['host_link']}" if setup["keep_layers"] < 0 else "keep_layers"
    return f"offload ({training['keep_layers']} of {layers} layers kept on the GPU, {how})"


def _plots(sweep: dict, alone: dict, runs: dict) -> list[go.Figure]:
    throughput = go.Figure()
    latency = go.Figure()
    for mode, points in sweep.items():
        shares = [s for s, _ in points]
        throughput.add_trace(go.Scatter(x=shares, y=[f["training"]["training_tokens_per_s"] for _, f in points],
                                        mode="lines+markers", name=f"{mode}: trained tokens/s"))
        throughput.add_trace(go.Scatter(x=shares, y=[f["training"]["training_tokens_per_trainer_s"] for _, f in points],
                                        mode="lines+markers", name=f"{mode}: per second of trainer time",
                                        line={"dash": "dot"}))
        latency.add_trace(go.Scatter(x=shares, y=[f["ttft_ms"] for _, f in points], mode="lines+markers",
                                     name=f"TTFT, trainer {mode}"))
        latency.add_trace(go.Scatter(x=shares, y=[f["tpot_ms"] for _, f in points], mode="lines+markers",
                                     name=f"TPOT, trainer {mode}", line={"dash": "dot"}))
    shares = [s for s, _ in next(iter(sweep.values()))]
    latency.add_trace(go.Scatter(x=shares, y=[alone["ttft_ms"]] * len(shares), mode="lines",
                                 name="TTFT, serving alone"))
    latency.add_trace(go.Scatter(x=shares, y=[alone["tpot_ms"]] * len(shares), mode="lines",
                                 name="TPOT, serving alone", line={"dash": "dot"}))
    throughput.update_layout(title="Training throughput vs feedback share (trainer colocated, time-sliced)",
                             xaxis_title="share of served requests with feedback", yaxis_title="training tokens/s")
    latency.update_layout(title="Serving latency vs feedback share (mean)", xaxis_title="share of served requests "
                          "with feedback", yaxis_title="ms")
    steps = go.Figure()
    for part in ("forward", "backward", "optimizer", "reload"):
        steps.add_trace(go.Bar(name=part, x=list(runs),
                               y=[f["training"]["step_s"][part] / max(f["training"]["steps"], 1)
                                  for f in runs.values()]))
    steps.update_layout(title="Training step breakdown (mean per step)", barmode="stack", yaxis_title="s")
    memory = go.Figure()
    for key, label in (("weight_state_bytes", "grads + optimizer state"), ("peak_activation_bytes", "activations")):
        memory.add_trace(go.Bar(name=label, x=list(runs), y=[f["training"][key] / 2 ** 30 for f in runs.values()]))
    memory.update_layout(title="Peak training memory per GPU", barmode="stack", yaxis_title="GiB")
    return [throughput, latency, steps, memory]


def _table(alone: dict, runs: dict, recording: dict) -> dict[str, Any]:
    rows = [["serving alone", round(alone["ttft_ms"], 2), round(alone["tpot_ms"], 2), "", "", "", ""]]
    for name, f in [*runs.items(), ("offload, trainer on its own GPU", recording)]:
        t = f["training"]
        rows.append([name, round(f["ttft_ms"], 2), round(f["tpot_ms"], 2), t["steps"],
                     round(t["training_tokens_per_trainer_s"]), round(t["forward_share"], 3),
                     round(t["peak_training_bytes"] / 2 ** 30, 2)])
    return {"title": "Serving and training per trainer mode",
            "columns": ["run", "mean TTFT ms", "mean TPOT ms", "steps", "training tok/s (trainer time)",
                        "forward share", "peak training GiB"], "rows": rows}


SCENARIO = Scenario(
    name="alchemist", number=10,
    paper="Alchemist: Towards the Design of Efficient Online Continual Learning System",
    claim="reusing the activations serving's prefill recorded raises training throughput up to 1.72x (the 30-42 % "
          "redundant forward removed) and cuts training memory up to 47 %, at negligible serving latency",
    setup=SETUP, run_fn=run, validate=validate)
