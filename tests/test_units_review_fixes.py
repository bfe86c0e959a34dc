"""A units review's findings: the twin's /metrics latencies on the simulated clock while its clients and counters run
on the wall clock (serve --speed != 1), a price or TDP the catalog does not know shown as 0 (hardware, estimate),
and simulate's TBT row called per token where a speculative step streams several tokens as one chunk."""

from __future__ import annotations

import io
import json
import math
import re

import pytest
from rich.console import Console

from phasewise.apps.twin_live import LiveSim
from phasewise.sim.deployment import collocated

M = "Qwen/Qwen3-8B"


def value(text: str, name: str) -> float:
    """The one sample of metric `name` (any labels)."""
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:\{{.*\}})? (\S+)$", text, re.MULTILINE)]
    assert len(values) == 1, (name, values)
    return values[0]


@pytest.mark.parametrize("speed", [0.25, 4.0])
def test_twin_metrics_are_wall_seconds_at_any_speed(speed):
    """At --speed s a span of x simulated seconds reaches the client after x / s wall seconds (the pump releases a
    token when now() = wall x s reaches it): every _seconds series and gauge says x / s, as the client measures it
    and as the counters beside it are rated. Driven without a server: the simulation run to its end at once."""
    live = LiveSim(collocated(M, "h100-sxm", engine="trtllm"), speed=speed)
    stream = live.submit(1000, 16)
    live.loop.run_until(math.inf)
    req = stream.req
    assert req.finish_s == req.finish_s and req.output == 16
    ttft_s, e2e_s = (req.first_token_s - req.arrival_s) / speed, (req.finish_s - req.arrival_s) / speed
    decode_s = (req.finish_s - req.first_token_s) / speed
    text = live.prometheus(M)
    approx = pytest.approx
    for name in ("vllm:time_to_first_token_seconds_sum", "dynamo_frontend_time_to_first_token_seconds_sum",
                 "dynamo_frontend_worker_last_time_to_first_token_seconds", "trtllm_time_to_first_token_seconds_sum"):
        assert value(text, name) == approx(ttft_s), name
    for name in ("vllm:e2e_request_latency_seconds_sum", "dynamo_frontend_request_duration_seconds_sum",
                 "trtllm_e2e_request_latency_seconds_sum"):
        assert value(text, name) == approx(e2e_s), name
    # the gaps after the first token: their sum is the decode span, the last mean gap (Dynamo's gauge) its mean
    for name in ("vllm:time_per_output_token_seconds_sum", "vllm:inter_token_latency_seconds_sum",
                 "dynamo_frontend_inter_token_latency_seconds_sum", "vllm:request_decode_time_seconds_sum"):
        assert value(text, name) == approx(decode_s), name
    assert value(text, "dynamo_frontend_worker_last_inter_token_latency_seconds") == approx(decode_s / 15, rel=1e-5)
    assert value(text, "trtllm_time_per_output_token_seconds_sum") == approx(decode_s / 15)
    queue_s = value(text, "vllm:request_queue_time_seconds_sum")
    assert queue_s + value(text, "vllm:request_prefill_time_seconds_sum") == approx(ttft_s)
    assert queue_s == approx(value(text, "trtllm_request_queue_time_seconds_sum"))
    assert value(text, "vllm:request_inference_time_seconds_sum") + queue_s == approx(e2e_s)
    assert live.wall_s(1.0) == 1.0 / speed  # the one conversion every series above goes through


def test_a_cancelled_request_lasts_wall_seconds(monkeypatch):
    """A client that leaves 0.2 simulated s after arriving at --speed 0.5 was served 0.4 wall s: Dynamo's request
    duration says so."""
    live = LiveSim(collocated(M, "h100-sxm"), speed=0.5)
    stream = live.submit(1000, 2000)
    left_s = stream.req.arrival_s + 0.2
    live.loop.run_until(left_s)  # some tokens out, then the client leaves
    monkeypatch.setattr(live, "now", lambda: left_s)  # (the clock where it left, for a fixed answer)
    live.cancel(stream)
    assert stream.req.streamed > 0
    duration = value(live.prometheus(M), "dynamo_frontend_request_duration_seconds_sum")
    assert duration == pytest.approx(0.2 / 0.5)


def test_unknown_price_and_tdp_are_null_and_na(run_cli):
    """The catalog's 0 for a price or TDP no public source gives (mi355x, vr200, cpu-local, the chips built from parts):
    null in --json, n/a in the table, never 0 (0 $/h reads as free); tokens per dollar null beside it."""
    code, out, err = run_cli("hardware", "mi355x,vr200,cpu-local,h100-sxm", "--json")
    assert code == 0, err
    rows = {r["key"]: r for r in json.loads(out)["hardware"]}
    assert [rows[k]["price_per_hour_usd"] for k in ("mi355x", "vr200", "cpu-local")] == [None, None, None]
    assert rows["cpu-local"]["tdp_w"] is None and rows["mi355x"]["tdp_w"] == 1400
    assert rows["h100-sxm"]["price_per_hour_usd"] == 3.99 and rows["h100-sxm"]["tdp_w"] == 700
    code, out, err = run_cli("hardware", "cpu-local,h100-sxm")
    assert code == 0, err
    cells = [c.strip() for c in next(line for line in out.splitlines() if "cpu-local" in line).split("│")]
    assert cells[-3:-1] == ["n/a", "n/a"]
    assert [c.strip() for c in next(line for line in out.splitlines() if "h100-sxm" in line).split("│")][-3:-1] == [
        "700", "3.99"]

    args = ("estimate", "--model", "meta-llama/Llama-3.1-8B", "--hardware", "h100-sxm,mi355x", "--batch", "1",
            "--prompt-len", "1024", "--context-len", "1024")
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    chips = {r["hardware"]: r for r in json.loads(out)["chips"]}
    assert chips["mi355x"]["price_per_hour_usd"] is None and chips["mi355x"]["decode_tokens_per_dollar"] is None
    assert chips["h100-sxm"]["price_per_hour_usd"] == 3.99 and chips["h100-sxm"]["decode_tokens_per_dollar"] > 0
    code, out, err = run_cli(*args)
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("│ mi355x"))
    assert "0.00" not in row and row.count("n/a") == 3


def test_speculative_tbt_row_is_per_streamed_chunk(run_cli):
    """With speculative decoding a step streams its accepted tokens as one chunk, and TBT is the gap between chunks
    (what vllm bench serve calls ITL): 2-3x the per-token TPOT here, so the row says chunk, not token."""
    from phasewise.apps.simulate_view import render_summary

    code, out, err = run_cli("simulate", "--model", "XiaomiMiMo/MiMo-7B-Base", "--hardware", "h100-sxm",
                             "--spec-tokens", "3", "--spec-acceptance", "0.7", "--rate", "4", "--requests", "40",
                             "--isl", "1024", "--osl", "64", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["tbt_ms"]["mean"] > 1.5 * summary["tpot_ms"]["mean"]  # gaps between chunks, not tokens

    def table(**kwargs) -> str:
        console = Console(width=120, record=True, file=io.StringIO())
        render_summary(console, summary, **kwargs)
        return console.export_text()

    assert "TBT (every streamed chunk)" in table() and "every token" not in table()  # not told: by chunk
    assert "TBT (every streamed chunk)" in table(speculative=True)
    assert "TBT (every token)" in table(speculative=False)
    code, out, err = run_cli("simulate", "--model", "XiaomiMiMo/MiMo-7B-Base", "--hardware", "h100-sxm",
                             "--spec-tokens", "3", "--spec-acceptance", "0.7", "--rate", "4", "--requests", "40",
                             "--isl", "1024", "--osl", "64")
    assert code == 0, err
    assert "TBT (every streamed chunk)" in out and "TBT (every token)" not in out


def test_a_cluster_with_a_chip_of_unknown_price_or_tdp_has_none():
    """plan/cluster_cost.py: a chip whose price (or TDP) the catalog does not know leaves the cluster's unknown
    (NaN, null in --json), not the known chips' sum (a mixed H100 / MI355X cluster read as cheap)."""
    import math

    from phasewise.plan.cluster_cost import cluster_hardware
    from phasewise.specs import load_hardware

    h100 = load_hardware("h100-sxm")
    mixed = {"instances": [{"hardware": "h100-sxm", "tp": 1, "replicas": 2, "role": "prefill"},
                           {"hardware": "mi355x", "tp": 1, "replicas": 1, "role": "decode"}]}
    assert math.isnan(cluster_hardware(mixed, with_cost=False).price_per_hour_usd)
    known = {"instances": [{"hardware": "h100-sxm", "tp": 2, "replicas": 2}]}
    cluster = cluster_hardware(known, with_cost=False)
    assert cluster.price_per_hour_usd == 4 * h100.price_per_hour_usd and cluster.tdp_w == 4 * h100.tdp_w
    assert math.isnan(cluster_hardware({"instances": [{"hardware": "cpu-local"}]}, with_cost=False).tdp_w)


def test_simulate_has_no_tokens_per_dollar_where_a_chip_has_no_price():
    """An MI355X prefill (no public price) beside an H100 decode: simulate priced the run at the H100's $3.99/h alone
    (356,635 tokens per dollar); one rule (HardwareSpec.gpu_hour_usd) leaves it unknown, as plan does."""
    import math

    from phasewise.sim import simulate
    from phasewise.sim.api import build

    spec = build(arch="disagg", prefill_hardware="mi355x", decode_hardware="h100-sxm", requests=30, rate=2.0)
    result = simulate(spec.deployment, spec.workload, spec.slo)
    assert math.isnan(result.price_per_hour_usd)
    assert math.isnan(result.summary()["throughput"]["output_tokens_per_dollar"])
