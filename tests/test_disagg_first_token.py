"""Disaggregated serving: how each engine's decode instance streams the first token the prefill instance sampled
(EngineProfile.disagg_first_token, sim/cluster.py first_token_pending). SGLang returns it with the second, at the end
of the decode instance's first step; a vLLM decode pod recomputes the last prompt token and samples the first token
itself in its first step, the second in the next; TensorRT-LLM's generation server sends it as it schedules the
first generation step. Every engine had streamed SGLang's pair: a vLLM run's TPOT came out below its every gap
(3 output tokens: TPOT 3.6 ms against 7.2 ms gaps)."""

import pytest

from phasewise.sim.api import run
from phasewise.specs import load_engine

DISAGG = dict(arch="disagg", prefill_workers=1, decode_workers=1, kv_link="nvlink", concurrency=1, requests=4,
              isl=1024, check_invariants=True)


def _summary(engine: str, osl: int) -> dict:
    return run(engine=engine, osl=osl, **DISAGG).summary()


def test_each_engine_says_how_its_decode_side_streams_the_first_token():
    assert {e: load_engine(e).disagg_first_token for e in ("vllm", "sglang", "trtllm-pytorch")} == {
        "vllm": "recomputed", "sglang": "with_second", "trtllm-pytorch": "at_schedule"}


@pytest.mark.parametrize("osl", [3, 10])
def test_the_first_gap_is_a_decode_step_where_the_engine_streams_the_tokens_apart(osl):
    vllm, sglang, trtllm = (_summary(e, osl) for e in ("vllm", "sglang", "trtllm"))
    step_ms = vllm["tbt_ms"]["mean"]
    # vLLM and TensorRT-LLM: every gap one decode step, so TPOT is the step; SGLang: its first gap is 0
    for s in (vllm, trtllm):
        assert s["tpot_ms"]["mean"] == pytest.approx(s["tbt_ms"]["mean"], rel=1e-6)
    assert sglang["tpot_ms"]["mean"] == pytest.approx(sglang["tbt_ms"]["mean"] * (osl - 2) / (osl - 1), rel=1e-6)
    # TTFT: TensorRT-LLM's first token leaves before the decode instance's first step, SGLang's and vLLM's with it
    # (vLLM's by the same step as SGLang's pair: its decode instance recomputes it there)
    assert trtllm["ttft_ms"]["mean"] < vllm["ttft_ms"]["mean"] - 0.5 * step_ms
    # a vLLM request decodes one step more than an SGLang one (the recomputed first token), E2E one step longer
    assert vllm["e2e_ms"]["mean"] - vllm["ttft_ms"]["mean"] == pytest.approx((osl - 1) * step_ms, rel=1e-3)


def test_the_twin_streams_them_as_the_engines_do():
    """Live, the tokens reach the client in the same chunks: SGLang's first chunk two tokens, the others' one."""
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim.deployment import disaggregated

    for engine, first_chunk in (("sglang", 2), ("vllm", 1), ("trtllm", 1)):
        live = LiveSim(disaggregated("meta-llama/Llama-3.1-8B", "h100-sxm", 1, 1, engine=engine))
        stream = live.submit(prompt_tokens=512, output_tokens=4)
        live.loop.run_until(1e6)  # simulated seconds: every event of the one request
        items = []
        while not stream.queue.empty():
            items.append(stream.queue.get_nowait())
        chunks = [n for kind, n in items if kind == "tokens"]
        assert chunks[0] == first_chunk and sum(chunks) == 4 and items[-1][0] == "done", (engine, items)
