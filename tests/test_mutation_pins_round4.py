"""Pins for behaviours a fourth mutation-testing round found unguarded in the cost model's core (collectives, weight
and KV memory, estimate's fit check, start-up graphs): each test fails under the mutation its docstring names (the
reviewer's names, /tmp/s110/review/mutation4) and states the behaviour by a hand-computed number or an exact rule of
the engine's source."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from phasewise.apps.twin_admission import RequestAdmission
from phasewise.apps.twin_request import ApiError
from phasewise.perf.estimate import estimate
from phasewise.perf.kv_geometry import compressor_ring_bytes
from phasewise.perf.memory import MemoryFit, kv_pool_sequences, memory_fit, weight_bytes_per_gpu
from phasewise.perf.parallel import parallel_layout
from phasewise.perf.startup import captured_graphs
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engines import resolve_engine

LLAMA_8B = "meta-llama/Llama-3.1-8B"
LLAMA_70B = "meta-llama/Llama-3.1-70B"  # 80 layers, hidden 8,192, vocabulary 128,256, untied head
QWEN_MOE = "Qwen/Qwen3-30B-A3B"  # 48 MoE layers, hidden 2,048
NEMOTRON_NAS = "nvidia/Llama-3_3-Nemotron-Super-49B-v1"  # 80 layers, 31 of them attention-free (no_op attention)
NEMOTRON_NANO = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"  # Mamba-2 hybrid MoE
GEMMA4_MOE = "google/gemma-4-26B-A4B-it"  # MoE with a tied LM head, no per-layer inputs, no vision tower here
DSV4_PRO = "deepseek-ai/DeepSeek-V4-Pro"


def _ops(it, name):
    return [op for op in it.operators if op.name == name]


# --- perf/collectives.py _collective: the custom all-reduce at a TP equal to the node (C4) ------------------------

def test_tp8_on_an_8_gpu_node_keeps_vllms_custom_all_reduce():
    """C4 (`ranks <= gpus_per_node` -> `<`). vLLM's CustomAllreduce runs for world sizes 2, 4, 6 and 8 inside one
    NVLink domain (_SUPPORTED_WORLD_SIZES = [2, 4, 6, 8], device_communicators/custom_all_reduce.py): TP8 on an 8-GPU
    HGX H100 board is the commonest large-model deployment and keeps it. Llama-3.1-70B's decode step at batch 32
    all-reduces 32 x 8,192 x 2 bytes = 524,288 bytes per call; at 450 GB/s x 0.8 link efficiency and 2 us a step the
    two-shot kernel (2 steps, 2 x 7/8 of the bytes: 6.55 us) beats one-shot (12.19 us) and NCCL's ring (14 steps:
    30.55 us). The mutant priced the ring: 160 calls x 30.55 us = 4.89 ms instead of 1.05 ms."""
    est = estimate(LLAMA_70B, "h100-sxm", tp=8, batch=32, prompt_len=2048)
    hw = est.cost_model.hw
    assert hw.interconnect.gpus_per_node == 8 and est.cost_model.engine.custom_allreduce
    lat, rate = hw.interconnect.intra_node_latency_s, 450e9 * hw.efficiency.link_efficiency
    assert (lat, rate) == (2e-6, 360e9)
    nbytes = 32 * 8192 * 2
    (op,) = _ops(est.decode, "tp_allreduce")
    assert op.count == 2 * 80 and op.bytes == 160 * nbytes
    two_shot = 2 * lat + 2 * 7 / 8 * nbytes / rate
    assert two_shot < lat + 7 * nbytes / rate < 14 * lat + 2 * 7 / 8 * nbytes / rate
    assert op.memory_s == pytest.approx(160 * two_shot, rel=1e-12)


# --- perf/collectives.py _reductions: attention DP without an expert exchange (C16) -------------------------------

def test_under_attention_dp_without_an_expert_exchange_the_moe_all_reduce_carries_every_ranks_tokens():
    """C16 (`all_tokens` -> `T`). SGLang's DP attention without --moe-a2a-backend gathers every attention rank's
    tokens before a tensor-parallel MoE layer and reduces the outputs over the whole TP group (dp_attention.py
    dp_gather / dp_scatter around the MoE): Qwen3-30B-A3B at --tp 4 --attention-dp 4, 64 prompts of 1,024 tokens, all
    48 MoE layers all-reduce 64 x 1,024 tokens x 2,048 x 2 bytes (268,435,456 bytes) each, not one rank's 16 x 1,024;
    attention TP is 1, so that is the only all-reduce."""
    est = estimate(QWEN_MOE, "h100-sxm", tp=4, attention_dp=4, engine="sglang", batch=64, prompt_len=1024)
    layout = est.cost_model.layout
    assert (layout.attention_tp, layout.ep, layout.dispatches) == (1, 1, False)
    (op,) = _ops(est.prefill, "tp_allreduce")
    assert op.count == 48
    assert op.bytes == 48 * (64 * 1024) * 2048 * 2 == 12_884_901_888


# --- perf/collectives.py _mixer_reductions: attention-free layers (C15) --------------------------------------------

def test_an_attention_free_layer_runs_no_all_reduce_after_its_absent_mixer():
    """C15 (`L - round(L x attention_free_share)` -> `L`). Nemotron NAS's no_op attention layers have no attention
    module at all (vLLM's nemotron_nas.py DeciLMDecoderLayer: `if not self._is_no_op_attention: self.self_attn = ...`),
    so no o_proj all-reduce: Llama-3.3-Nemotron-Super-49B at TP2 all-reduces after 80 - 31 = 49 attentions and 80
    MLPs, 129 per forward (the mutant: 160)."""
    est = estimate(NEMOTRON_NAS, "h100-sxm", tp=2, batch=1, prompt_len=16)
    assert est.cost_model.model.attention_free_layers == 31
    (op,) = _ops(est.decode, "tp_allreduce")
    assert op.count == (80 - 31) + 80 == 129
    assert op.bytes == 129 * 1 * 8192 * 2


# --- perf/memory.py weight_bytes_per_gpu: the embedding under DP attention (M8), the PP split (M2) -----------------

def test_under_dp_attention_the_embedding_is_whole_on_each_attention_rank():
    """M8 (`embedding_params / attention_tp` -> `/ tp`). Under DP attention each attention rank looks its tokens up
    in its own table, split only over its attention TP group (SGLang's VocabParallelEmbedding with enable_tp = not
    is_dp_attention_enabled(), deepseek_v2.py / qwen2_moe.py; vLLM's DP ranks each their own TP group): at --tp 8
    --attention-dp 8 (attention TP 1) Gemma 4 26B-A4B's tied table (262,144 x 2,816) is held whole, in BF16, on each
    GPU. A tied model keeps the LM head out of this (it is the same table at PP 1)."""
    model = load_model(GEMMA4_MOE)
    assert model.tie_embeddings and not model.per_layer_input_params and model.vision is None
    quant = load_quant("bf16")
    layout = parallel_layout(model, 8, ep=8, attention_dp=8)
    with_table = weight_bytes_per_gpu(model, quant, 8, 1, layout)
    without = weight_bytes_per_gpu(model, quant, 8, 1, layout, embeddings=False)
    assert model.embedding_params == model.vocab_size * model.hidden_size
    assert with_table - without == pytest.approx(model.embedding_params * 2, rel=1e-12)


def test_pipeline_stages_split_the_layers_as_vllms_get_pp_indices():
    """M2 (`ceil(num_layers / pp)` -> `num_layers // pp`). vLLM's get_pp_indices (distributed/utils.py) gives each
    stage num_layers // pp and one more to the stages before the last for the remainder: 80 layers over PP3 are
    [27, 27, 26]. Llama-3.1-70B at TP2 PP3 thus holds 27 layers and the embedding (128,256 x 8,192 / 2 x 2 bytes) on
    its first stage, 26 and the LM head (as large) on its last: the busiest GPU 27 layers + the table. The mutant
    put 26 on the first stages and 28 on the last."""
    model, quant = load_model(LLAMA_70B), load_quant("bf16")
    per_layer = weight_bytes_per_gpu(model, quant, 2, 1, embeddings=False) / 80  # an untied head: none at PP1 either
    table = 128256 * 8192 / 2 * 2
    assert model.embedding_params == 128256 * 8192 and not model.tie_embeddings
    assert weight_bytes_per_gpu(model, quant, 2, 3) == pytest.approx(27 * per_layer + table, rel=1e-12)


# --- perf/estimate.py: the fit check's new token (E2), state pools under attention DP (E4, E5) ---------------------

def test_the_fit_check_counts_the_decode_steps_new_token():
    """E2 (`max(prompt_len, context_len + 1)` -> `context_len`). The decode step at a 4,096-token context writes the
    4,097th token's KV: in vLLM's 16-token blocks a sequence takes ceil(4,097 / 16) = 257 blocks = 4,112 tokens, and
    8 of them 32,896, the figure kv_tokens_per_sequence x batch (the mutant: 32,768 while the per-sequence figure
    still said 4,112)."""
    est = estimate(LLAMA_8B, "h100-sxm", batch=8, prompt_len=512, context_len=4096)
    mem = est.to_dict()["memory"]
    assert mem["kv_block_tokens"] == 16
    assert mem["kv_tokens_per_sequence"] == math.ceil(4097 / 16) * 16 == 4112
    assert est.memory.kv_needed_tokens == mem["kv_needed_tokens"] == 8 * 4112 == 32_896


def test_a_hybrids_kv_block_under_attention_dp_is_sized_by_one_attention_ranks_state():
    """E4 (`tp // attention_dp` -> `tp` in kv_state_pages). vLLM's hybrid KV cache manager raises the attention
    block until one layer's block of KV holds one Mamba layer's state, both on one GPU of the attention TP group
    (docs/design/hybrid_kv_cache_manager.md; kv_state_pages: 1,072 tokens for Nemotron-3-Nano). At --tp 4
    --attention-dp 4 (vLLM's --data-parallel-size 4, TP 1 per rank) each rank holds the whole state and the whole
    KV, as at TP1: 1,072-token blocks and 4 blocks of states a sequence, not TP4's 544."""
    tp1 = estimate(NEMOTRON_NANO, "h100-sxm", batch=4, prompt_len=512)
    assert tp1.kv_pages == (1072, 4288.0)
    assert estimate(NEMOTRON_NANO, "h100-sxm", tp=4, batch=4, prompt_len=512).kv_pages[0] == 544
    dp = estimate(NEMOTRON_NANO, "h100-sxm", tp=4, ep=4, attention_dp=4, batch=4, prompt_len=512)
    assert dp.kv_pages == (1072, 4288.0)
    # 4 sequences of 513 tokens: one 1,072-token block each and the states' 4 blocks
    assert dp.memory.kv_needed_tokens == 4 * (1072 + 4288)


def test_sglangs_deepseek_v4_compressor_rings_are_held_for_one_ranks_share_of_the_slots():
    """E5 (`ceil(max_seqs / attention_dp)` -> `max_seqs` in slot_state_bytes). SGLang's DeepSeek-V4 pools keep the
    HCA compressors' rings per request slot (DSV4PoolConfigurator._get_c128_state_fixed_bytes: 16.25 MB for
    DeepSeek-V4-Pro's 31 HCA layers), and under DP attention each rank's request pool holds its share of
    --max-running-requests (model_runner's max_num_reqs // dp_size): 256 over 8 ranks is 32 slots, 520 MB a GPU,
    not 256 slots' 4.16 GB."""
    est = estimate(DSV4_PRO, "h200-sxm", tp=8, ep=8, attention_dp=8, engine="sglang", batch=8, prompt_len=1024,
                   knobs={"max_running_requests": 256})
    ring = compressor_ring_bytes(est.cost_model.model)[1]
    assert ring == 16_252_928  # 15.5 MiB = 16.25 MB
    assert est.memory.slot_bytes == 32 * ring == 520_093_696


# --- perf/startup.py captured_graphs: vLLM's capture sizes up to the max, inclusive (S5) ---------------------------

@pytest.mark.parametrize("max_seqs, graphs", [(1, 1), (2, 2), (4, 3), (8, 4), (16, 5)])
def test_vllm_v0_captures_1_2_4_and_the_multiples_of_8_up_to_its_max_batch_inclusive(max_seqs, graphs):
    """S5 (`size <= largest` -> `<`). vLLM V0's _BATCH_SIZES_TO_CAPTURE = [1, 2, 4] + [8 x i], those no larger than
    its max batch captured (worker/model_runner.py): max_num_seqs 1 captures [1], 2 [1, 2], 4 [1, 2, 4], 8
    [1, 2, 4, 8], 16 [1, 2, 4, 8, 16] (each max a size of the list, so V0's rounding of max_num_seqs up to one,
    _get_graph_batch_size, changes nothing). The mutant dropped the size equal to the max for 1, 2 and 4."""
    hw = load_hardware("h100-sxm")
    config = resolve_engine("vllm-v0", hw, {"max_num_seqs": max_seqs})
    assert config.max_seqs == max_seqs and not config.profile.cuda_graph_sizes
    assert captured_graphs(config, hw) == graphs


# --- perf/memory.py kv_pool_sequences: the pool in whole blocks (M20) ---------------------------------------------

def test_the_pool_holds_sequences_in_whole_blocks_only():
    """M20 (`capacity // block x block` -> `capacity`). The pool is num_blocks whole blocks (the simulator's
    KVBlocks(capacity // block)); where a sequence's state or window share is not whole blocks (TensorRT-LLM's
    DeepSeek-V4 window pages: 128-token pages, ~11,797 tokens of windows a sequence), the tokens beyond the last
    whole block hold nothing. Blocks of 128, a 1,000-token context (8 blocks = 1,024 tokens) and 100 tokens of
    state: 1,124 a sequence. A 3,372-token pool is 26 whole blocks (3,328 tokens): 2 sequences, not 3,372 // 1,124
    = 3."""
    terms = (1.0, 0.0, 0, False)
    assert kv_pool_sequences(3372, 1000, terms, (128, 100.0)) == 3328 // 1124 == 2
    assert kv_pool_sequences(3456, 1000, terms, (128, 100.0)) == 3  # 27 blocks


# --- perf/memory.py memory_fit: states under attention DP (M30, M31); MemoryFit.fits in whole blocks (M32) --------

def test_recurrent_states_held_apart_are_one_attention_ranks_share_of_the_sequences():
    """M30 (`per_sequence x ceil(max_seqs / dp)` -> `x max_seqs`). An engine that holds each running sequence's
    recurrent state apart from the KV pool (TensorRT-LLM's MambaCacheManager, one slot per sequence of its
    max_batch_size) does it per attention rank for that rank's sequences: Nemotron-3-Nano at --tp 4 --attention-dp 4
    with 256 sequences in the instance holds 64 states a GPU (each whole: attention TP 1), not 256."""
    model, hw, quant = load_model(NEMOTRON_NANO), load_hardware("h100-sxm"), load_quant("bf16")
    layout = parallel_layout(model, 4, ep=4, attention_dp=4)
    fit = memory_fit(model, hw, quant, 4, 1, max_tokens=8192, max_seqs=256, layout=layout)
    whole = memory_fit(model, hw, quant, 1, 1, max_tokens=8192, max_seqs=1)
    assert fit.state_bytes_per_sequence == whole.state_bytes_per_sequence  # one rank's state: all its heads
    assert fit.state_bytes == 64 * fit.state_bytes_per_sequence


def test_sglangs_state_pool_seats_under_dp_attention_are_every_ranks_summed():
    """M31 (`int(state // per_sequence) x dp` -> without `x dp`). SGLang's mamba pool (--mamba-full-memory-ratio)
    is one per DP-attention rank, each rank's scheduler running as many sequences as its own pool seats: the
    instance's state_seats is the seats of one GPU's pool (its state bytes over one sequence's state, floored) times
    the 4 ranks."""
    est = estimate(NEMOTRON_NANO, "h100-sxm", tp=4, ep=4, attention_dp=4, engine="sglang", batch=8, prompt_len=512)
    mem = est.memory
    per_rank = int(mem.state_bytes // mem.state_bytes_per_sequence)
    assert per_rank > 0 and mem.state_seats == 4 * per_rank


def test_a_batch_fits_only_in_the_pools_whole_blocks():
    """M32 (`kv_pool_tokens >= kv_needed_tokens` -> `kv_capacity_tokens >=`). The pool is num_blocks whole blocks
    (MemoryFit.kv_pool_tokens): 1,000 tokens of KV memory in 16-token blocks hold 62 blocks, 992 tokens, so a batch
    needing 1,000 tokens does not fit and one needing 992 does."""
    common = dict(capacity_bytes=80e9, usable_bytes=72e9, weight_bytes=16e9, activation_bytes=1e9,
                  reserved_bytes=1e9, kv_bytes_per_token=131072.0, kv_capacity_tokens=1000, kv_block_tokens=16)
    assert MemoryFit(kv_needed_tokens=992, **common).kv_pool_tokens == 992
    assert MemoryFit(kv_needed_tokens=992, **common).fits
    assert not MemoryFit(kv_needed_tokens=1000, **common).fits


# --- perf/layer_gemms.py _mlp: the MoE router over a rank's own tokens (L11) ---------------------------------------

def test_under_attention_dp_each_rank_routes_only_its_own_tokens():
    """L11 (the router's GEMM over `T` -> `all_tokens`). Each attention rank scores its own tokens before they are
    dispatched (SGLang's DeepseekV2MoE.forward_deepep: router_logits = self.gate(hidden_states) ahead of
    deepep_dispatcher.dispatch; the gate is replicated): Qwen3-30B-A3B at --tp 4 --ep 4 --attention-dp 4, 64 prompts
    of 1,024 tokens, routes 16 x 1,024 tokens a GPU through a 2,048 x 128 gate in each of its 48 MoE layers,
    2 x 16,384 x 2,048 x 128 FLOPs each (the mutant: every rank's 65,536 tokens)."""
    est = estimate(QWEN_MOE, "h100-sxm", tp=4, ep=4, attention_dp=4, engine="sglang", batch=64, prompt_len=1024)
    (op,) = _ops(est.prefill, "moe_router")
    assert op.count == 48
    assert op.flops == 48 * 2 * (16 * 1024) * 2048 * 128 == 412_316_860_416


# --- perf/attention.py: latent attention's kernels (A9, A10); perf/cost.py: the PP hop's streams (K22) ------------

def _latent_attention():
    """DeepSeek-V3's attention at TP8: 16 heads a GPU, 192-wide q/k heads (128 nope + 64 RoPE), 128-wide values,
    a 512-wide latent."""
    att = estimate("deepseek-ai/DeepSeek-V3", "h200-sxm", tp=8, batch=1, prompt_len=16).cost_model.attention
    lat = att.latent
    assert (att.heads, att.head_dim, lat.kv_lora_rank, lat.qk_rope_head_dim, lat.v_head_dim) == (16, 192, 512, 64, 128)
    return att


def test_absorbed_latent_decode_multiplies_scores_over_latent_and_rope_and_outputs_over_the_latent():
    """A10 (`2 x heads x (cached + kv_lora_rank)` -> `2 x heads x cached`). FlashMLA's absorbed decode scores each
    head's query against the cached latent and RoPE key (512 + 64 = 576 wide) and sums the probabilities times the
    latent (512 wide): 2 x (576 + 512) FLOPs a (head, key) pair. One new token over 4,096 keys on a GPU's 16 heads,
    with the absorbed K-up (128 -> 512) and V-up (512 -> 128) GEMMs of its 16 head rows:
    2 x 16 x 1,088 x 4,096 + 2 x (2 x 16 x 128 x 512) = 146,800,640 FLOPs."""
    att = _latent_attention()
    assert att.kernel(1, 1, 4096, 4096, True)[0] == 2 * 16 * 1088 * 4096 + 2 * (2 * 16 * 128 * 512) == 146_800_640


def test_a_latent_prefill_over_a_cached_prefix_up_projects_every_keys_latent():
    """A9 (the up-projection over `kv_tokens` -> `tokens`). A prefill chunk after a cached prefix attends with full
    heads, so every key's latent, the prefix's too, is up-projected to this GPU's heads' K (nope) and V (vLLM's MLA
    _compute_prefill_context runs kv_b_proj over each chunk of the cached context; SGLang's MHA_CHUNKED_KV alike):
    1,024 new tokens after 3,072 cached, 16 heads of 192 / 128: 2 x 16 x (192 + 128) FLOPs for each of the
    1,024 x 3,072 + 1,024 x 1,025 / 2 pairs, and 2 x 4,096 keys x 512 x 16 x (128 + 128) for the up-projection."""
    att = _latent_attention()
    pairs = 1024 * 3072 + 1024 * 1025 // 2
    assert att.kernel(1, 1024, pairs, 4096, False)[0] == 2 * 16 * 320 * pairs + 2 * 4096 * 512 * (16 * 256)


def test_deepseek_v4s_pipeline_hop_carries_every_hyper_connection_stream():
    """K22 (`T x streams x h` -> `T x h`). DeepSeek-V4 keeps hc_mult = 4 residual streams between its layers
    (manifold-constrained hyper-connections) and the next stage's first layer reads all of them: at PP2 two
    1,024-token prompts send 2,048 x 4 x 4,096 x 2 bytes = 67,108,864 bytes over the stage boundary, not a plain
    residual's quarter of that."""
    est = estimate("deepseek-ai/DeepSeek-V4-Flash", "h200-sxm", tp=8, pp=2, batch=2, prompt_len=1024)
    model = est.cost_model.model
    assert (model.compressed.hc_mult, model.hidden_size) == (4, 4096)
    (op,) = _ops(est.prefill, "pp_send_recv")
    assert op.count == 1 and op.bytes == 2048 * 4 * 4096 * 2 == 67_108_864


# --- perf/estimate.py Estimate.beyond_context: a prompt of exactly the context is kept (E8) ------------------------

def test_a_prompt_of_exactly_the_models_context_is_kept_and_one_more_token_refused():
    """E8 (`<= limit` -> `< limit`). vLLM refuses a prompt only when it is longer than max_model_len ("The decoder
    prompt (length ...) is longer than the maximum model length", its processor's _validate_model_input): at
    Llama-3.1-8B's 131,072-token context a 131,072-token prompt is served, a 131,073-token one refused."""
    assert estimate(LLAMA_8B, "h100-sxm", prompt_len=131072).beyond_context() is None
    refusal = estimate(LLAMA_8B, "h100-sxm", prompt_len=131073).beyond_context()
    assert refusal.startswith("--prompt-len 131,073 is beyond meta-llama/Llama-3.1-8B's 131,072-token context")


# --- perf/estimate.py: windows under attention DP (E9, E10); SGLang's running requests from its pool (E11) --------

def test_window_kv_terms_under_attention_dp_are_one_attention_ranks_as_at_tp1():
    """E9 (kv_window_terms at `attention_tp` -> `tp`). Gemma 4 26B-A4B's sliding layers have their own KV geometry,
    and how much KV a windowed layer holds per full layer's on one GPU depends on the heads that GPU holds. At
    --tp 8 --attention-dp 8 each attention rank holds every KV head, as at TP1: vLLM's layer groups then hold 10
    windowed-layer tokens a full-layer token within the 1,024-token window, not TP8's 2.5."""
    kw = dict(engine="vllm", batch=8, prompt_len=1024)
    assert estimate(GEMMA4_MOE, "h200-sxm", **kw).kv_terms == (1.0, 10.0, 1024, False)
    assert estimate(GEMMA4_MOE, "h200-sxm", tp=8, **kw).kv_terms == (1.0, 2.5, 1024, False)
    assert estimate(GEMMA4_MOE, "h200-sxm", tp=8, ep=8, attention_dp=8, **kw).kv_terms == (1.0, 10.0, 1024, False)


def test_sglangs_window_pools_are_reported_per_attention_rank():
    """E10 (window_pool_tokens of `kv_capacity_tokens // attention_dp` -> of all of it). Each DP-attention rank of
    SGLang has its own SWA pool and logs its own "Use sliding window memory pool. full_layer_tokens=...,
    swa_layer_tokens=..." (the window pool swa_full_tokens_ratio 0.8 of the full one): MiMo-V2-Flash at --tp 8
    --attention-dp 8 reports one rank's eighth of the instance's KV tokens, over its full-layer tokens' weight."""
    est = estimate("XiaomiMiMo/MiMo-V2-Flash", "h200-sxm", tp=8, ep=8, attention_dp=8, engine="sglang", batch=8,
                   prompt_len=1024)
    assert est.window_kv_layout == "window_pool"
    full = int(est.memory.kv_capacity_tokens // 8 / est.kv_terms[0])
    assert est.window_pool_tokens == (full, int(full * 0.8))
    assert est.to_dict()["memory"]["window_pool_tokens"] == [full, int(full * 0.8)]


def test_sglangs_default_running_requests_follow_its_kv_pool():
    """E11 (the re-resolve from the KV pool dropped). Unset, --max-running-requests is min(the pool's tokens // 2,
    the request pool) (tp_worker.py), the request pool min(max(pool tokens / context x 512, 2,048), 4,096)
    (model_runner.py init_memory_pool): Llama-3.1-8B on one H100 has 412,721 KV tokens at its 131,072-token context,
    so int(412,721 / 131,072 x 512) = 1,612 -> 2,048 requests, not the 4,096 assumed before the pool is known."""
    est = estimate(LLAMA_8B, "h100-sxm", engine="sglang")
    kv = est.memory.kv_capacity_tokens
    assert 300_000 < kv < 500_000  # 412,721 at this writing
    request_pool = min(max(int(kv / 131072 * 512), 2048), 4096)
    assert est.memory.max_sequences == max(1, min(kv // 2, request_pool)) == 2048


# --- apps/twin_admission.py RequestAdmission.check_context: a request of exactly the context (T1) -------------------

def test_the_twin_serves_a_request_whose_prompt_and_max_tokens_exactly_fill_the_context():
    """T1 (`prompt_tokens + max_tokens <= context` -> `<`). vLLM's OpenAI server refuses a request only when its
    prompt and max_tokens exceed max_model_len (serving_engine.py _validate_input: token_num + max_tokens >
    max_model_len -> "This model's maximum context length is ..."): at a 128-token context, 100 + 28 is served and
    100 + 29 refused, naming max_tokens."""
    admission = SimpleNamespace(context_tokens=128)
    assert RequestAdmission.check_context(admission, 100, 28, "prompt", "max_tokens") is None
    with pytest.raises(ApiError, match=r"maximum context length is 128 tokens; the request has 100 prompt and 29 "
                                       r"output tokens \(max_tokens is too large\)") as refused:
        RequestAdmission.check_context(admission, 100, 29, "prompt", "max_tokens")
    assert (refused.value.status, refused.value.param, refused.value.code) == (400, "max_tokens",
                                                                                "context_length_exceeded")


def test_a_prompt_that_alone_fills_the_context_is_what_the_twin_names():
    """T2 (`prompt_tokens >= context` -> `>`). Where the prompt alone takes the whole context no max_tokens could
    fit beside it, so the error names the prompt's parameter: a 128-token prompt at a 128-token context asking one
    output token is refused with param "prompt", a 127-token one asking two with "max_tokens"."""
    admission = SimpleNamespace(context_tokens=128)
    with pytest.raises(ApiError) as refused:
        RequestAdmission.check_context(admission, 128, 1, "prompt", "max_tokens")
    assert refused.value.param == "prompt"
    with pytest.raises(ApiError) as refused:
        RequestAdmission.check_context(admission, 127, 2, "prompt", "max_tokens")
    assert refused.value.param == "max_tokens"
