"""Catalog review (session 107): capacities as the driver reports them, VM on-demand prices, and the does-not-fit
hint naming only precisions smaller than the one run."""

from __future__ import annotations

from phasewise.specs import load_hardware


def test_capacities_follow_the_drivers_figure_for_the_same_memory():
    """The header's rule: memory_capacity_bytes is nvidia-smi's memory.total where known. Rubin's 288 GB is stored
    as GB300's driver figure for the same 288 GB (it was 288e9 B, 3 % less); H20-3e's 141 GB as the H200's."""
    assert load_hardware("vr200").memory_capacity_bytes == load_hardware("gb300").memory_capacity_bytes
    assert load_hardware("h20-3e").memory_capacity_bytes == load_hardware("h200-sxm").memory_capacity_bytes
    assert load_hardware("h20").memory_capacity_bytes == 102.63e9  # 97871 MiB


def test_prices_are_vm_on_demand_rates():
    """L40S at CoreWeave's on-demand VM rate (was Modal's serverless per-second rate), MI300X at DigitalOcean's
    self-service on-demand list price (was its per-contract plan's)."""
    l40s, mi300x = load_hardware("l40s"), load_hardware("mi300x")
    assert l40s.price_per_hour_usd == 2.25 and "on-demand" in l40s.sources["price_per_hour_usd"]
    assert mi300x.price_per_hour_usd == 2.59 and "on-demand" in mi300x.sources["price_per_hour_usd"]


def test_a_model_that_does_not_fit_is_offered_only_smaller_precisions(run_cli):
    code, _, err = run_cli("estimate", "--model", "meta-llama/Llama-3.1-70B", "--hardware", "l40s", "--precision",
                           "fp8")
    assert code == 2 and "use a smaller --precision (w4a16)," in err and "(fp8, w4a16)" not in err
    code, _, err = run_cli("estimate", "--model", "meta-llama/Llama-3.1-405B", "--hardware", "l40s")
    assert code == 2 and "use a smaller --precision (fp8, w4a16)," in err


def test_the_hint_offers_only_precisions_the_chip_computes(run_cli):
    """An A100 has no FP8 path: Llama-3.1-70B in BF16 there was told 'fp8, w4a16', and fp8 then failed on the path."""
    code, _, err = run_cli("estimate", "--model", "meta-llama/Llama-3.1-70B", "--hardware", "a100-sxm-80gb")
    assert code == 2 and "use a smaller --precision (w4a16)," in err
