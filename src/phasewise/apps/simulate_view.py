"""Rich rendering of a simulation summary, and simulate's progress bar. The per-request records --out writes:
apps/records_writer.py; the checks of --out's paths before the run: apps/output_checks.py."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from phasewise.apps.output_checks import (  # noqa: F401 (importable here, as before)
    CHECKPOINT_SUFFIXES,
    RECORDS,
    SUMMARY,
    _identity,
    as_written,
    check_records_out,
    input_files,
    named_in_deployment,
    records_paths,
    refuse_overwriting_inputs,
    table_path,
)
from phasewise.apps.records_writer import (  # noqa: F401 (importable here, as before)
    discard,
    note_others,
    signals_held,
    staging_path,
    write_records,
    write_table,
)

if TYPE_CHECKING:
    from rich.console import Console


# A run shows a progress bar only once it has taken this long (short runs print nothing extra).
PROGRESS_AFTER_S = 2.0


@contextmanager
def progress_after(console: Console, label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A `progress(done, total)` callback for long work: on a terminal, a transient bar that appears once the work
    has taken PROGRESS_AFTER_S; None (no reporting at all) when output is not a terminal or `enabled` is off."""
    if not (enabled and console.is_terminal):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    start = time.perf_counter()
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                   transient=True)
    task: list[int] = []

    def progress(done: int, total: int) -> None:
        if not task:
            if time.perf_counter() - start < PROGRESS_AFTER_S:
                return
            bar.start()
            task.append(bar.add_task(label, total=total))
        bar.update(task[0], completed=done, total=total)

    try:
        yield progress
    finally:
        if task:
            bar.stop()


def ms_cell(value: float) -> str:
    """A latency figure in ms as the tables print it: one decimal, "-" where there is none (NaN: no request had it,
    e.g. a TPOT where every answer is one token), not "nan"."""
    return f"{value:.1f}" if math.isfinite(value) else "-"


def render_summary(console: Console, s: dict[str, Any], client: str | None = None,
                   speculative: bool | None = None) -> None:
    """The summary as tables and lines; `client` (--client): the ITL printed beside the steady state is the one that
    client reports (metrics.CLIENT_ITL: every gap, or per request). The TBT row is the gap between streamed chunks
    (metrics.TbtHistogram): one a token only where `speculative` is False (a speculative step streams its accepted
    tokens as one chunk); None (not told) labels it by chunk, which holds either way."""
    from rich.table import Table  # (imported here: --json output needs no table)

    from phasewise.apps.cli_common import fit_to_width
    from phasewise.sim.metrics import NO_RATE, client_itl

    t = s["throughput"]
    gpus_words = (f"{s['gpus']:.0f} GPU(s)" if s["gpus"] == int(s["gpus"])
                  else f"{s['gpus']:.2f} GPU(s) (the mean held)")
    per_dollar = t["output_tokens_per_dollar"]  # NaN: no chip has a rental price (chips from parts)
    per_dollar_words = f", {per_dollar:,.0f}/$" if math.isfinite(per_dollar) else ", no rental price"
    rates = NO_RATE if s["requests"] < 2 else (
        f"{t['requests_per_s']:.2f} req/s, {t['output_tokens_per_s']:,.0f} output tok/s "
        f"({t['output_tokens_per_s_per_gpu']:,.0f}/GPU{per_dollar_words})")
    console.print(
        f"[bold]{s['completed']}/{s['requests']}[/] requests in {s['duration_s']:.1f} simulated s on {gpus_words}: "
        f"{rates}, {s['preemptions']} preemptions" + (f", {s['rejected']} rejected" if s["rejected"] else ""))
    table = Table(title="Latency (ms)", title_justify="left")
    # the figures whole (no_wrap), the metrics' names wrapped; on a narrow terminal fit_to_width drops p50
    for col in ("metric", "mean", "p50", "p90", "p99"):
        table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=col != "metric")
    tbt = "TBT (every token)" if speculative is False else "TBT (every streamed chunk)"
    for key, label in (("ttft_ms", "TTFT"), ("tbt_ms", tbt), ("tpot_ms", "TPOT (per request)"),
                       ("e2e_ms", "end-to-end"), ("queue_ms", "queueing")):
        d = s[key]
        table.add_row(label, *(ms_cell(d[k]) for k in ("mean", "p50", "p90", "p99")))
    fit_to_width(table, console.width, optional=("p50",))
    console.print(table)
    if not any(math.isfinite(s["tpot_ms"][k]) for k in ("mean", "p99")) and math.isfinite(s["ttft_ms"]["mean"]):
        console.print("TBT and TPOT: - (no request produced a second token: every answer here is one token long)")
    if s.get("warmup_requests"):
        console.print(f"{s['warmup_requests']} warm-up request(s) simulated first and excluded from every figure")
    ss, conc = s.get("steady_state"), s.get("concurrency")
    if ss:
        def fig(d: dict[str, Any]) -> str:
            return "/".join(ms_cell(d[k]) for k in ("mean", "p50", "p99"))

        itl = client_itl(client)
        how = "every gap" if itl == "tbt_ms" else "per request"
        console.print(f"Steady state ({ss['requests']} requests, first/last wave of {ss['concurrency']} excluded), "
                      f"mean/p50/p99 ms:\n  TTFT {fig(ss['ttft_ms'])}, TPOT {fig(ss['tpot_ms'])}, "
                      f"ITL ({how}) {fig(ss[itl])}"
                      f"\n  vs all {s['requests']} requests (as {client or 'the client'} reports them): "
                      f"TTFT {fig(s['ttft_ms'])}, TPOT {fig(s['tpot_ms'])}, ITL ({how}) {fig(s[itl])}")
    elif conc:
        console.print(f"Steady state: none (all {s['requests']} requests are in the first or last wave of {conc}; "
                      f"more than {2 * conc} needed)")
    slo, g = s["slo"], s["goodput"]
    # every TBT's share only under a TBT SLO: without one (slo.tbt_ms inf, null in --json) it is the finished share
    tbt_limit = slo.get("tbt_ms")
    tbt = (f", every TBT {slo['tbt_attainment']:.1%}" if tbt_limit is not None and math.isfinite(tbt_limit)
           else "")
    console.print(f"SLO {slo['applied']}: attainment {slo['attainment']:.1%} (TTFT {slo['ttft_attainment']:.1%}, "
                  f"TPOT {slo['tpot_attainment']:.1%}{tbt}); "
                  + (f"goodput: {NO_RATE}" if s["requests"] < 2
                     else f"goodput {g['requests_per_s']:.2f} req/s ({g['requests_per_s_per_gpu']:.2f}/GPU)"))
    inst = Table(title="Instances", title_justify="left")
    # names and figures whole (no_wrap); on a narrow terminal fit_to_width drops the secondary columns, in this order
    for col in ("instance", "role", "GPUs", "busy", "iterations", "mean\nbatch", "tokens\n/iter", "KV\nmean",
                "KV\npeak", "compute\nutil", "BW\nutil", "energy\nkJ", "preempt"):
        inst.add_column(col, justify="left" if col in ("instance", "role") else "right", no_wrap=True)
    for i in s["instances"]:
        inst.add_row(i["name"], i["role"], str(i["gpus"]), f"{i['busy_fraction']:.0%}", f"{i['iterations']:,}",
                     f"{i['mean_batch_seqs']:.1f}", f"{i['mean_tokens_per_iteration']:.0f}", f"{i['kv_mean_use']:.0%}",
                     f"{i['kv_peak_use']:.0%}", f"{i['compute_utilization']:.0%}", f"{i['bandwidth_utilization']:.0%}",
                     f"{i['energy_j'] / 1e3:,.1f}", str(i["preemptions"]))
    fit_to_width(inst, console.width, optional=("tokens\n/iter", "energy\nkJ", "KV\nmean", "BW\nutil", "mean\nbatch",
                                             "compute\nutil", "iterations", "preempt", "GPUs", "KV\npeak"))
    console.print(inst)
    pools = (s.get("policy") or {}).get("priority_pools")
    if pools:
        console.print(
            f"Priority pools: LP {', '.join(s['instances'][i]['name'] for i in pools['lp_instances'])}; "
            f"HP {', '.join(s['instances'][i]['name'] for i in pools['hp_instances'])}. Offloaded "
            f"{pools['offloaded_requests']:,} requests ({pools['offload_fraction']:.1%}): "
            f"{pools['offloads_waiting']:,} from the queue, {pools['migrations_transfer']:,} decodes by KV transfer, "
            f"{pools['migrations_recompute']:,} by recompute. HP finished {pools['hp_requests']:,}: "
            f"{pools['hp_ttft_violations']:,} missed TTFT, {pools['hp_tbt_violations']:,} missed TBT. "
            f"Busy: LP {pools['lp_busy_fraction']:.0%}, HP {pools['hp_busy_fraction']:.0%}.")
    offload = (s.get("policy") or {}).get("attention_offload")
    if offload:
        hosts = "; ".join(f"{h['name']} HBM {h['hbm_use']:.0%}" for h in offload["hosts"])
        refused = ", ".join(f"{k} {v:,}" for k, v in offload["declined"].items()) or "none"
        console.print(
            f"Attention offload ({offload['mode']}): {offload['offloaded_requests']:,} requests' decode attention ran "
            f"on prefill GPUs; mean decode batch {offload['mean_local_seqs']:.0f} local + "
            f"{offload['mean_offloaded_seqs']:.0f} offloaded (N/M {offload['offloaded_per_local']:.2f}); "
            f"prefill {hosts}; refused: {refused}.")
    for scale in (s.get("policy") or {}).get("autoscale") or ():
        if scale["metric"] == "sla":
            modes = [f"throughput-based every {scale['sync_period_s']:g} s, {scale['predictor']} predictor"] \
                if scale["throughput_scaling"] else []
            if scale["max_gpu_budget"] is not None:
                modes.append(f"both groups within {scale['max_gpu_budget']} GPUs ({scale['budget_trims']} "
                             f"adjustments trimmed)")
            if scale["load_scaling"]:
                modes.append(f"load-based every {scale['load_period_s']:g} s: {scale['load_scale_ups']} up, "
                             f"{scale['load_scale_downs']} down")
            how = (f"Dynamo's SLA planner, TTFT {scale['ttft_s']:g} s / ITL {scale['itl_s'] * 1e3:g} ms, "
                   f"{'; '.join(modes)}")
        elif scale.get("autoscaler") == "kpa":
            how = (f"Knative's KPA, {scale['metric']} -> {scale['target']:g} x "
                   f"{scale['target_utilization_percentage']:g} % per replica over {scale['stable_window_s']:g} s, "
                   f"every {scale['sync_period_s']:g} s"
                   + (f", scale-down delay {scale['scale_down_delay_s']:g} s" if scale["scale_down_delay_s"] else "")
                   + (f", activation scale {scale['activation_scale']}" if scale["activation_scale"] > 1 else "")
                   + f"; {scale['panics']} panics")
        elif scale.get("autoscaler") == "keda":
            how = (f"KEDA, the HPA on {scale['metric']}'s total / {scale['target']:g} a replica every "
                   f"{scale['sync_period_s']:g} s; polled every {scale['polling_interval_s']:g} s, to zero after "
                   f"{scale['cooldown_period_s']:g} s at or below {scale['activation_threshold']:g}")
        else:
            how = f"{scale['metric']} -> {scale['target']:g} per replica, every {scale['sync_period_s']:g} s"
        console.print(
            f"Autoscaler of the {scale['role']} group {scale['group']} ({how}): "
            f"{scale['min_replicas']}-{scale['max_replicas']} replicas, mean {scale['mean_replicas']:.2f}, peak "
            f"{scale['peak_replicas']}; {scale['scale_ups']} scale-ups (a replica serves {scale['startup_s']:.0f} s "
            f"after it starts), {scale['scale_downs']} scale-downs; {scale['replica_seconds'] / 3600:.2f} "
            f"replica-hours (price and idle energy over them)")
    queue = (s.get("policy") or {}).get("router_queue")
    if queue:
        console.print(
            f"Router queue (dynamo_kv): {queue['held_requests']:,} requests held until an instance had room, at most "
            f"{queue['peak_waiting']:,} at once, {queue['mean_hold_s'] * 1e3:,.0f} ms each on average (in their TTFT)")
    mapped = (s.get("policy") or {}).get("mapping")  # sim/mapped_energy.py mapping_summary
    if mapped:
        parts = sorted(mapped["by_substrate_j"].items(), key=lambda item: -item[1])
        span_s = s["duration_s"]
        mean_w = (f", {mapped['energy_j'] / span_s:.3g} W on average over the {span_s:.1f} simulated s"
                  if span_s > 0 else "")
        console.print(f"Operator mapping {', '.join(mapped['mappings'])}: {mapped['energy_j']:.3g} J of dynamic energy "
                      f"over {mapped['iterations']:,} iterations on the substrates ("
                      + ", ".join(f"{name} {joules:.3g} J" for name, joules in parts) + f"){mean_w}")
    cache = s.get("prefix_cache")
    if cache:
        console.print(
            f"Prefix cache ({cache['instances']} instance(s)): hit rate {cache['hit_rate_tokens']:.1%} of prompt "
            f"tokens, "
            f"{cache['hit_rate_blocks']:.1%} of shareable {cache['prefix_block_tokens']}-token blocks; "
            f"{cache['saved_prefill_tokens']:,} prefill tokens saved; {cache['evicted_prefix_blocks']:,} "
            f"{cache['prefix_block_tokens']}-token blocks ({cache['evicted_tokens']:,} tokens of KV) evicted")
        if cache["host_capacity_blocks"]:
            console.print(
                f"  host memory tier: {cache['host_hit_rate_tokens']:.1%} of prompt tokens hit there "
                f"({cache['host_hit_blocks']:,} blocks copied back in {cache['host_load_s']:.3g} s of PCIe time); "
                f"{cache['host_cached_blocks']:,} of {cache['host_capacity_blocks']:,} "
                f"{cache['prefix_block_tokens']}-token blocks held, "
                f"{cache['host_written_blocks']:,} written, {cache['host_dropped_blocks']:,} dropped")
            if cache["host_written_through"] and cache["host_capacity_blocks"] <= cache["gpu_capacity_blocks"]:
                console.print(
                    f"  the host tier holds no more than the GPU KV cache ({cache['gpu_capacity_blocks']:,} "
                    f"{cache['prefix_block_tokens']}-token blocks): "
                    "written through, it keeps the blocks the GPU keeps and adds few hits; SGLang sizes it at 2x the "
                    "GPU pool by default")
        if cache.get("host_beyond_node"):
            console.print(f"  [yellow]host memory[/]: {cache['host_beyond_node']}")
    if cache and cache["store_capacity_blocks"]:
        console.print(
            f"  shared KV store: {cache['store_hit_rate_tokens']:.1%} of prompt tokens hit there "
            f"({cache['store_hit_blocks']:,} blocks fetched in {cache['store_load_s']:.3g} s of network time); "
            f"{cache['store_cached_blocks']:,} of {cache['store_capacity_blocks']:,} "
            f"{cache['prefix_block_tokens']}-token blocks held, "
            f"{cache['store_written_blocks']:,} written, {cache['store_dropped_blocks']:,} dropped")
    images = s.get("images")
    if images:
        encoded = sum(i.get("images_encoded", 0) for i in s["instances"])
        busy = ", ".join(f"{i['name']} {i['encoder_busy_fraction']:.1%}" for i in s["instances"]
                         if i.get("images_encoded"))
        if images["per_request"] == "trace":
            carried = (f"the trace's NumImages ({images['images_carried']:,} on {images['requests_with_images']:,} "
                       "requests)")
        else:
            share = "" if images["share"] >= 1 else f" on {images['share']:.0%} of the requests"
            carried = f"{images['per_request']} per request{share}"
        mixture = len(images["sizes"]) > 1

        def size(s: dict) -> str:
            weight = f" ({s['weight']:.0%})" if mixture else ""
            return (f"{s['size_px'][0]}x{s['size_px'][1]} px{weight} resized to {s['resized_px'][0]}x"
                    f"{s['resized_px'][1]}: {s['patches']:,} encoder patches and {s['prompt_tokens']:,} prompt tokens")

        console.print(f"Images: {carried}, {'; '.join(size(s) for s in images['sizes'])} each; {encoded:,} encoded "
                      f"(warm-up included), the encoder's share of the time: {busy}")
        with_images, without = images["ttft_ms_with_images"], images["ttft_ms_without_images"]
        if images["requests_with_images"]:
            some_without = without["p50"] == without["p50"]  # not NaN: some requests carry none
            console.print(f"TTFT p50 / p90 ms: {images['requests_with_images']:,} requests with images "
                          f"{with_images['p50']:.1f} / {with_images['p90']:.1f}"
                          + (f", without {without['p50']:.1f} / {without['p90']:.1f}" if some_without else ""))
    sim = s["sim"]
    console.print(f"[dim]simulated in {sim['wall_s']:.2f} s wall ({sim['requests_per_wall_s']:,.0f} requests/s, "
                  f"{sim['events']:,} events)[/]")
