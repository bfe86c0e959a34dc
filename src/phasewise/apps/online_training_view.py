"""`phasewise simulate --online-training ...`: the colocated trainer's figures (summary["policy"]["online_training"],
also in --json as they are)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def render_online_training(console: Console, summary: dict[str, Any]) -> None:
    """One paragraph on the trainer, when the simulation had one."""
    t = (summary.get("policy") or {}).get("online_training")
    if not t:
        return
    gib = 2 ** 30
    method = f"LoRA r={t['lora_rank']}" if t["method"] == "lora" else "full fine-tuning"
    sharing = t["sharing"] if t["trainer_sm_share"] is None else f"{t['sharing']} ({t['trainer_sm_share']:.0%} SMs)"
    reuse = t["reuse"]
    if reuse == "offload":
        reuse += f" over {t['host_link']}" + (f", {t['keep_layers']} layers kept" if t["keep_layers"] else "")
    step = t["step_s"]
    total = sum(step.values()) or 1.0
    parts = ", ".join(f"{k} {v / total:.0%}" for k, v in step.items())
    console.print(
        f"Online training ({method}, reuse {reuse}, {sharing}): {t['samples']:,} feedback samples "
        f"({t['feedback_share']:.0%} of requests, {t['sample']}), {t['steps']:,} steps of <= "
        f"{t['train_batch_tokens']:,} tokens trained {t['trained_tokens']:,} tokens "
        f"({t['samples_untrained']:,} samples left in the queue); {t['training_tokens_per_s']:,.0f} training tok/s "
        f"({t['training_tokens_per_trainer_s']:,.0f} per second of trainer time, busy {t['trainer_busy_s']:.1f} s); "
        f"step time: {parts}.")
    console.print(
        f"  Memory per GPU: peak training {t['peak_training_bytes'] / gib:.1f} GiB (grads + optimizer "
        f"{t['weight_state_bytes'] / gib:.1f} GiB, activations {t['peak_activation_bytes'] / gib:.1f} GiB), "
        f"{t['reserved_bytes'] / gib:.1f} GiB reserved from the KV cache ({t['kv_blocks_reserved']:,} blocks). "
        f"Serving: recorded {t['recorded_bytes'] / gib:,.1f} GiB in {t['recording_s']:.2f} s of prefill"
        + (f" (host link {t['record_link_utilization']:.0%} busy copying them)" if t["reuse"] == "offload" else "")
        + (f" ({t['recording_skipped']:,} requests not recorded: buffer full)" if t["recording_skipped"] else "")
        + f", {t['serving_time_lost_s']:.2f} s of serving time lost to the trainer.")
    if t.get("peak_over_reserved_bytes", 0.0) > 0:
        console.print(
            f"  [yellow]A step, beside the recordings the buffer held, took {t['peak_over_reserved_bytes'] / gib:.1f} GiB "
            "more than was reserved from the KV cache (the activations of the tokens it recomputed: answers fed back, "
            "or recordings skipped); on a GPU "
            "it would not fit beside the KV cache: sample prompt only, fewer train_batch_tokens, or reuse "
            "recompute, whose reservation holds every activation.[/yellow]")
