"""MoE and disaggregated fixed-concurrency runs: predicted vs measured mean TTFT and mean TPOT, per model family,
mode and engine (the companion of validate_concurrency.py: its simulation, constants, --fit and tables are reused).

    python benchmarks/validate_moe.py --limit 20                      # class-default constants
    python benchmarks/validate_moe.py --family DeepSeek-V3/R1 --mode agg --max-concurrency 64
    python benchmarks/validate_moe.py --fit --max-concurrency 64 --fit-evals 6 --fit-sweeps 1 --csv out.csv
    python benchmarks/validate_moe.py --rounds 2 --warmup-rounds 0    # the client read as genai-perf's defaults
    python benchmarks/validate_moe.py --reading aic                   # every row deployed as AIConfigurator writes it
    python benchmarks/validate_moe.py --reading inferencex            # deployed and measured as InferenceX does
    python benchmarks/validate_moe.py --with engine:sglang.eager_launch_s=3e-5   # a candidate constant
    python benchmarks/validate_moe.py --split fit --with-dense --constants catalog --fit \
        --fit-only hardware:blackwell.kernel_launch_s,hardware:blackwell.memory_efficiency_max   # efficiency.yaml b200

After the error tables (per family x mode x engine, then per family x mode; fit vs held-out) a bias table gives
the signed median error by mode x engine x concurrency band and the median measured - predicted TTFT (ms).

Rows. ../shared/measured/blackwell_serving.csv (AIConfigurator's measured Blackwell runs): every MoE row (agg
and disagg) and every disaggregated row of a dense model; the dense collocated rows belong to
validate_concurrency.py. The Hopper rows of the same source are reserved for an independent check and are
not used here in any way. Rows phasewise cannot cost are counted under a skip reason (NOT_COSTED: none today;
Qwen/Qwen3.5-397B-A17B, gated-DeltaNet linear attention in 3 of every 4 layers, and zhipuai/GLM-5, DeepSeek sparse
attention, were until their layers were modelled, as openai/gpt-oss-120b before its hybrid sliding-window layers and
MiniMaxAI/MiniMax-M2.5, an alias of the MiniMax-M2 entry whose all-1 attn_type_list the parser reads as full
attention, in the first run of this harness).
Checkpoints costed as the architecture they quantize: nvidia/DeepSeek-R1-NVFP4 as DeepSeek-R1,
nvidia/DeepSeek-V3.1-NVFP4 as DeepSeek-V3 (V3.1 keeps V3's DeepseekV3ForCausalLM fields), nvidia/Qwen3-32B-NVFP4
as Qwen3-32B; moonshotai/Kimi-K2.5 is an alias of the Kimi-K2 text model (specs/data/models.yaml, with source).

Layout columns -> instances. AIConfigurator writes each instance (agg worker, or per role for disagg) as tp_size,
pp_size, attention_dp_size, moe_tp_size, moe_ep_size, and its MoE models assert
tp_size x attention_dp_size == moe_tp_size x moe_ep_size (ai-dynamo/aiconfigurator src/aiconfigurator/sdk/
models: "should be equal"), the instance's GPU count G; its generator launches a worker on
gpus_per_worker = tp x pp x dp GPUs and, for TensorRT-LLM, tensor_parallel_size = moe_tp x moe_ep with
enable_attention_dp when dp > 1 (generator/module_bridge.py, generator/rule_plugin/benchmark/trtllm.rule); the
sampled rows are read back through cli_estimate with exactly these fields (tools/.../silicon_sample driver). So a
row is the same layout whatever the engine: phasewise tp = G (the instance's GPUs), attention_dp =
attention_dp_size (attention over G / attention_dp GPUs per rank, each rank with its own sequences), ep =
moe_ep_size (moe_tp = G / ep). The engines differ only in how they spell it: SGLang --tp G --dp A
--enable-dp-attention --ep E, TensorRT-LLM tp_size G enable_attention_dp moe_expert_parallel_size E, vLLM
--tensor-parallel-size G/A --data-parallel-size A --enable-expert-parallel (EP = G).
Two readings of the columns are not layouts, found in the CSV itself:
  squared   moe_tp_size == moe_ep_size = g > 1 and one of tp_size / attention_dp_size equal to g x g (e.g.
            SGLang tp 64, moe 8x8; TensorRT-LLM attention_dp 64, moe 8x8 on an 8-GPU b200 node). Each such row
            that has a twin row of the same measurement (same model family, system, lengths, concurrency, TTFT and
            TPOT) has it with g GPUs, pure EP g and attention as TP g (tp-style) or DP g (attention_dp-style),
            batch_size x g = concurrency (--layout-evidence: of 242 squared agg rows, 93 have a twin and all 93
            twins are laid out so; none another way). So the squared rows are read as g GPUs, attention TP or
            DP g, EP g. (Ambiguous only where a real TP-g x EP-g layout would look the same: Qwen3.5 on b300,
            tp 4, moe 2x2, 12 rows, skipped for its attention anyway.)
  totals    pure tensor parallelism over more than 8 GPUs of a MoE model (tp_size = moe_tp_size = N, no
            attention DP, no EP: N = 12, 20, 24, 28, 36, 40, 48, 52, 64, 72 on gb200, most of which do not divide
            DeepSeek's 128 heads, at concurrencies up to 5,632): a deployment's GPU total, not an instance
            layout; skipped.
Instance count. Collocated: concurrency = batch_size x attention_dp_size (the source's rule), one instance; a
row where it is not is skipped (deployment not stated). Disaggregated: prefill_num_workers and
decode_num_workers instances, and concurrency = decode_batch_size x decode attention_dp x decode workers; rows
without worker counts are skipped (the deployment is not stated).
Engine knobs, as AIConfigurator's generator writes them (generator/rule_plugin/{sglang,trtllm}.rule and
benchmark/*.rule; assumed to be how the silicon rows were deployed: the CSV lists no engine flags):
sequence cap = batch_size x attention_dp per instance (SGLang's max_running_requests; vLLM's max_num_seqs and
TensorRT-LLM's max_batch_size are each attention-DP rank's, batch_size, as the engines and phasewise read them:
specs/engine_caps.py PER_RANK_KNOBS); agg token budget = batch_size + isl + 1500 per rank (TensorRT-LLM max_num_tokens,
vLLM max_num_batched_tokens); SGLang agg: max_prefill_tokens = isl + 1500 per rank and enable_mixed_chunk true ("agg
enable_mixed_chunk = true"); prefill role: token budget isl + 1500 per rank; TensorRT-LLM decode role: max_num_tokens
= its sequence cap; SGLang with attention DP and EP over more than 8 GPUs: --moe-a2a-backend deepep (chosen on the
fit rows: the note by AIC_MARGIN). KV link: nvlink
on gb200/gb300 (one NVL72 domain) or when prefill and decode fit one 8-GPU node, else rdma.
--reading inferencex reads the rows as SemiAnalysis InferenceX's recipes deploy and measure them instead (the
container images of many rows are those InferenceX's configs name, e.g. the enroot form nvcr.io#nvidia/...): its
client (utils/bench_serving/benchmark_serving.py: 10 x C prompts, 2 x C warm-up copies of the first, input and
output lengths uniform in [0.8 L, L], the workflow's RANDOM_RANGE_RATIO 0.8) and, for collocated rows, its scripts'
flags: SGLang DeepSeek-R1 (chunked prefill 32768 at TP8 / 8192 at TP4 for FP8, 16384 for FP4, no mixed chunks,
--scheduler-recv-interval 10 below 16 concurrent requests and 30 from 16), TensorRT-LLM DeepSeek-R1 / gpt-oss
(max_num_tokens per attention-DP rank, and with attention DP attention_dp_config enable_balance: timeout_iters 60
and batching_wait_iters 0 for DeepSeek-R1, the defaults for gpt-oss: sim/context_wait.py), vLLM token budgets.
--reading provenance (the default) reads each collocated measurement by where it ran: AIConfigurator's generator
launches every worker through Dynamo (generator/config/backend_templates/*/run.sh.j2: python3 -m dynamo.trtllm |
sglang | vllm), so a run whose image (on any of its twin rows) is the engine's own (lmsysorg/sglang,
vllm/vllm-openai, nvidia/tensorrt-llm/release) was not deployed by it: those take InferenceX's flags, the rest
(Dynamo images, no image, every disaggregated row) AIConfigurator's; the client sends fixed lengths to all, as the
CSV's README states. Chosen on the fit rows (274): mean-TTFT median error 32.2 % (aic), 28.0 % (provenance);
TPOT 16.85 % both. (Reading every row whose id starts with a date as InferenceX's gave 29.7 % / 17.2 % on the fit
rows; an id's form is no evidence of who deployed the run, so it was not taken.)
Precision: gemm/moe quant nvfp4 -> nvfp4, fp8/fp8_block -> fp8-block (DeepSeek's 128x128 block scales), fp8/fp8
-> fp8, int4_wo -> bf16-w4a16-g32 (Kimi-K2.5's native format: INT4 routed experts in groups of 32, its attention,
shared experts and dense first layer BF16; until 2026-12-05 w4a16 everywhere, its attention costed at INT4),
empty/bf16 -> bf16; gpt-oss-120b's FP4 rows (labelled nvfp4) -> bf16-mxfp4, the only format its checkpoint ships in
(MXFP4 routed experts, the rest BF16; until session 77 mxfp4 everywhere, its attention costed at FP4; and
AIConfigurator's w4a16_mxfp4 MoE mode -> bf16-mxfp4, its Hopper label); KV cache FP8 for fp8, fp8-block and FP4 rows
(validate_concurrency.py's rule and evidence).

Duplicates: 1,146 in-scope rows repeat another row's measurement (same model family, system, backend, mode,
lengths and concurrency, TTFT equal to 0.1 ms and TPOT to 0.01 ms: DeepSeek-R1 runs reappear labelled DeepSeek-V3,
and some copies carry the values rounded to two decimals); the first row in file order that is not squared-encoded
is kept, the rest are skipped as duplicates, so a measurement can never sit on both sides of the split.

Fit / held-out split (fixed before any MoE or disaggregated error was looked at): rows are assigned by
configuration = (backend, mode, model, system, precision, instance layout(s) and worker counts); within each
(backend, mode) the configurations are ordered by sha256 of that key and the first ceil(n/3) are 'fit', the rest
'test' (held out). The split is computed over every non-duplicate in-scope row whose layout maps, whether or not
its model or hardware is costed today, so it does not move when a model family lands.
Constants, request counts, warm-up and --fit: as validate_concurrency.py (class-default constants; N = 10 x C
requests from C closed-loop genai-perf clients, 2 x C warm-up; --fit fits on fit rows only and reports held-out
error beside the class-default one). Every row simulates the 10 x C requests it was measured with (about 2 minutes
on 2 cores); --large-c C bounds rows at concurrency >= C to --large-c-rounds x C requests for a quick look (the 58
rows at C >= 1024 hold 87 % of all decode tokens), at a cost: their first, synchronised wave then weighs a fifth of
the mean TTFT instead of a tenth (disaggregated TensorRT-LLM at C >= 1024: +181 % bias at 2 x C, -35 % at 10 x C).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate_concurrency as vc  # noqa: E402 - the sibling harness: simulation, constants, fit, tables

CSV_PATH = vc.CSV_PATH
MODES = ("agg", "disagg")
FAMILY = {"deepseek-ai/DeepSeek-R1": "DeepSeek-V3/R1", "deepseek-ai/DeepSeek-V3": "DeepSeek-V3/R1",
          "nvidia/DeepSeek-R1-NVFP4": "DeepSeek-V3/R1", "nvidia/DeepSeek-V3.1-NVFP4": "DeepSeek-V3/R1",
          "moonshotai/Kimi-K2.5": "Kimi-K2.5", "nvidia/Qwen3-32B-NVFP4": "Qwen3-32B",
          "openai/gpt-oss-120b": "gpt-oss", "Qwen/Qwen3.5-397B-A17B": "Qwen3.5", "zhipuai/GLM-5": "GLM-5",
          "MiniMaxAI/MiniMax-M2.5": "MiniMax-M2.5"}
NOT_COSTED = {
}
# (precision, gemm_quant_mode, moe_quant_mode) -> phasewise precision, where the rule (vc.quant_precision) is not
# what the rows ran: this CSV's int4 rows are Kimi-K2.5's native INT4 experts beside BF16 layers (models.yaml)
PRECISION = {("int4", "int4_wo", "int4_wo"): "bf16-w4a16-g32"}
# a checkpoint released in one format only, whatever label the CSV gives its FP4 runs: openai/gpt-oss-120b ships its
# experts in MXFP4 (config.json quant_method mxfp4) and the engines serve that checkpoint; AIConfigurator labels its
# Blackwell FP4 runs nvfp4 and its Hopper MoE mode w4a16_mxfp4 ("native data format for gpt oss",
# sdk/common.py MoEQuantMode)
NATIVE_FP4 = {"openai/gpt-oss-120b": "bf16-mxfp4"}
FP8_KV = vc.FP8_KV
NODE_GPUS = 8  # GPUs per HGX B200/B300 node; gb200/gb300 rows sit in one NVL72 domain
NVL72 = ("gb200", "gb300")
AIC_MARGIN = vc.AIC_BUDGET_MARGIN  # isl + 1500: AIConfigurator's prefill / agg token budget
# SGLang instances whose experts spread over more than one node's GPUs (attention DP beside EP 16-32: the GB200 /
# GB300 rows' 32-GPU decode workers) read as run with --moe-a2a-backend deepep, the wide-EP recipes' flag, not
# SGLang's default gather (every rank's tokens onto every GPU; the CSV states no flags). Chosen on the fit rows
# (cfg489, cfg528, cfg575: 6 rows at 1,024-6,144 clients): TPOT median |error| 17 % read so (signed -10 to -36 %),
# 34 % with the gather (+32 to +79 %).
# WIDE_EP_COLUMNS. SGLang 0.5.5.post2's disaggregated rows write every attention-DP instance's MoE as moe_tp_size G,
# moe_ep_size 1 (34 instances: decode 32 and 4 GPUs, prefill 4 and 8), its 0.5.8 / 0.5.8.post1 rows as moe_tp 1,
# moe_ep G (77 of 83), and every other attention-DP instance over more than 8 GPUs in the CSV (SGLang, TensorRT-LLM,
# vLLM: G 16-64) has moe_ep_size > 1. Read as written, the ten 0.5.5.post2 DeepSeek-V3 decode instances over 32
# GB200 GPUs at attention DP 32 would be MoE TP 32: FP8 experts 2,048 / 32 = 64 wide, which SGLang refuses at load
# (not whole 128-wide blocks: specs/engine_refusals.py block_shape_refusal), yet five of them are FP8 runs that were
# measured. Such an instance is the wide-EP deployment the harness reads as DeepEP (the note above), and SGLang's
# --moe-a2a-backend deepep sets its EP size to its TP size (srt/server_args.py _handle_a2a_moe): so an SGLang
# attention-DP instance over more than a node whose columns say moe_ep 1 is read as EP G (ten rows, five FP8 and five
# FP4; the split keeps its key as the columns write it: config_key). Within a node (4 or 8 GPUs) MoE TP runs, at
# whole blocks: those keep the columns' reading.


def row_precision(r: dict[str, str]) -> str | None:
    """The phasewise precision of a row: its checkpoint's native FP4 format for an FP4 run (NATIVE_FP4, and
    AIConfigurator's w4a16_mxfp4 MoE mode), else the (precision, gemm, moe quant) columns' PRECISION entry, else
    the rule validate_concurrency.py's quant_precision applies to every AIConfigurator quant mode."""
    prec = (PRECISION.get((r["precision"], r["gemm_quant_mode"], r["moe_quant_mode"]))
            or vc.quant_precision(r, vc.is_dense(r["model_path"]))[0])
    return NATIVE_FP4.get(r["model_path"], prec) if prec == "nvfp4" else prec


def launched_without_dynamo(r: dict[str, str]) -> bool:
    """Whether the row's container is the engine's own release image (lmsysorg/sglang, vllm/vllm-openai,
    nvidia/tensorrt-llm/release) rather than a Dynamo runtime: AIConfigurator's generator launches every worker
    through Dynamo (generator/config/backend_templates/*/run.sh.j2: python3 -m dynamo.trtllm|sglang|vllm), so such a
    run was not deployed by it; InferenceX's single-node recipes serve from exactly those images."""
    return bool(r["image"]) and "ai-dynamo" not in r["image"]


@dataclass(frozen=True, slots=True)
class Layout:
    """One instance: G GPUs, attention over G / attention_dp GPUs per rank, experts over ep GPUs (moe_tp = G/ep)."""
    gpus: int
    attention_dp: int = 1
    ep: int = 1
    squared: bool = False  # read from the squared encoding (see the module docstring)
    wide_ep: bool = False  # moe_tp G, moe_ep 1 read as EP G (WIDE_EP_COLUMNS)

    def text(self, as_written: bool = False) -> str:
        """`as_written`: a wide_ep layout as its columns read (no EP), the split's key (config_key)."""
        ep = 1 if as_written and self.wide_ep else self.ep
        return f"{self.gpus}g" + (f"/dp{self.attention_dp}" if self.attention_dp > 1 else "") + \
            (f"/ep{ep}" if ep > 1 else "")


def _int(value: str, default: int = 1) -> int:
    return int(value) if value not in ("", None) else default


def instance_layout(row: dict[str, str], prefix: str = "", moe: bool = True) -> Layout:
    """The instance layout of a row (agg: prefix ''; disagg: 'prefill_' / 'decode_'); ValueError(reason) when the
    columns do not describe one. A dense model's MoE columns (0, empty or 1) mean nothing and are ignored."""
    tp, pp = _int(row[prefix + "tp_size"]), _int(row[prefix + "pp_size"])
    adp = _int(row[prefix + "attention_dp_size"])
    mt_raw, ep_raw = row[prefix + "moe_tp_size"], row[prefix + "moe_ep_size"]
    if not row[prefix + "tp_size"]:
        raise ValueError("layout not stated")
    if pp != 1:
        raise ValueError(f"pipeline parallel (pp {pp}) not mapped")
    if not moe:
        return Layout(tp * adp, adp)
    mt, ep = _int(mt_raw), _int(ep_raw)
    attn, moe = tp * adp, mt * ep
    if mt > 1 and mt == ep and attn == mt * ep and min(tp, adp) == 1:
        return Layout(mt, mt if adp > 1 else 1, mt, squared=True)
    if attn != moe:
        raise ValueError(f"tp x attention_dp ({attn}) != moe_tp x moe_ep ({moe})")
    if adp == 1 and ep == 1 and attn > NODE_GPUS:
        raise ValueError(f"pure TP over {attn} GPUs of a MoE model (a deployment's GPU total, not an instance)")
    if row.get("backend") == "sglang" and adp > 1 and ep == 1 and attn > NODE_GPUS:
        return Layout(attn, adp, attn, wide_ep=True)  # SGLang's attention DP across nodes: EP (WIDE_EP_COLUMNS)
    return Layout(attn, adp, ep)


def row_cap(row: dict[str, str], prefix: str = "") -> int:
    """The instance's sequence cap: batch_size (per attention rank) x attention_dp_size, as the row writes them."""
    return _int(row[prefix + "batch_size"]) * _int(row[prefix + "attention_dp_size"])


def measurement_key(r: dict[str, str]) -> tuple:
    """One measurement: the model family (DeepSeek-R1 runs also appear labelled DeepSeek-V3), system, engine, mode,
    lengths, concurrency, and TTFT / TPOT to 0.1 / 0.01 ms (some copies carry them rounded to two decimals)."""
    return (FAMILY.get(r["model_path"], r["model_path"]), r["system"], r["backend"], r["mode"], r["isl"], r["osl"],
            r["concurrency"], round(float(r["silicon_ttft_ms"]), 1), round(float(r["silicon_tpot_ms"]), 2))


# Rows measured with something the CSV has no column for: batches of TensorRT-LLM DeepSeek-R1 collocated runs whose
# TPOT, at each configuration also measured in another batch (same system, precision, layout, lengths and
# concurrency), is ~0.6x the other batch's and their TTFT higher, the signature of multi-token-prediction
# speculative decoding (InferenceX runs DeepSeek-R1 on TensorRT-LLM with and without MTP from the same image:
# benchmarks/dsr1_*_b200_trt.sh and *_trt_mtp.sh); with no draft length or acceptance stated they cannot be simulated
# as measured. 1.2.0rc6.post3 (88 rows, 47 distinct measurements): at its 44 twin configurations TPOT 0.61x
# (median; 0.43-0.87), TTFT 1.11x. 1.1.0rc2.post2 measured on 2026-01-14 (32 rows, 30 distinct; the same image's
# 2025-12-15 runs are not): at its 13 twin configurations TPOT 0.61x (0.47-0.75), TTFT 1.44x. Found by comparing
# batches of runs with each other, not with phasewise's predictions. (backend, backend_version, model_path, mode,
# measured_on prefix: "" for any day)
PROBABLE_MTP = (("trtllm", "1.2.0rc6.post3", "deepseek-ai/DeepSeek-R1", "agg", ""),
                ("trtllm", "1.1.0rc2.post2", "deepseek-ai/DeepSeek-R1", "agg", "2026-01-14"))


def probable_mtp(r: dict[str, str]) -> str | None:
    """The skip reason of a row in a PROBABLE_MTP batch, else None."""
    for backend, version, model, mode, day in PROBABLE_MTP:
        if (r["backend"], r["backend_version"], r["model_path"], r["mode"]) == (backend, version, model, mode) \
                and r.get("measured_on", "").startswith(day):
            when = f", measured {day}" if day else ""
            return (f"TensorRT-LLM {version} DeepSeek-R1{when}: probable MTP speculative decoding (TPOT ~0.6x the "
                    "same configurations' in other batches)")
    return None


def in_scope(r: dict[str, str]) -> bool:
    return not (vc.is_dense(r["model_path"]) and r["mode"] == "agg")


@dataclass(frozen=True, slots=True)
class Mapped:
    """A row's deployment as far as the CSV states it (models and hardware not resolved yet)."""
    layouts: dict[str, Layout]  # role -> layout ('collocated' or 'prefill' and 'decode')
    workers: dict[str, int]
    caps: dict[str, int]

    def key(self, as_written: bool = False) -> str:
        return ",".join(f"{role}:{self.workers[role]}x{lay.text(as_written)}" for role, lay in self.layouts.items())


def map_row(r: dict[str, str]) -> Mapped:
    """Row -> instances, worker counts and sequence caps; ValueError(reason) when the CSV does not state them."""
    c = _int(r["concurrency"], 0)
    moe = not vc.is_dense(r["model_path"])
    if not c:
        raise ValueError("concurrency not stated")
    if r["mode"] == "agg":
        lay = instance_layout(r, "", moe)
        cap = row_cap(r)
        if cap != c:
            raise ValueError("deployment not stated: concurrency != batch_size x attention_dp_size")
        return Mapped({"collocated": lay}, {"collocated": 1}, {"collocated": cap})
    layouts = {role: instance_layout(r, role + "_", moe) for role in ("prefill", "decode")}
    if not (r["prefill_num_workers"] and r["decode_num_workers"]):
        raise ValueError("disagg worker counts not stated")
    workers = {role: _int(r[role + "_num_workers"]) for role in ("prefill", "decode")}
    caps = {role: row_cap(r, role + "_") for role in ("prefill", "decode")}
    if caps["decode"] * workers["decode"] != c:
        raise ValueError("deployment not stated: concurrency != decode batch x attention_dp x workers")
    return Mapped(layouts, workers, caps)


def config_key(r: dict[str, str], m: Mapped) -> str:
    """The split's key: the layouts as the columns write them (a WIDE_EP_COLUMNS reading leaves the split as it was)."""
    return "|".join((r["backend"], r["mode"], r["model_path"], r["system"], r["precision"], m.key(as_written=True)))


def split_configs(keyed: list[tuple[dict[str, str], Mapped]]) -> set[str]:
    """The 'fit' configurations: per (backend, mode), the first ceil(n/3) by sha256 of the key."""
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r, m in keyed:
        groups[(r["backend"], r["mode"])].add(config_key(r, m))
    fit: set[str] = set()
    for keys in groups.values():
        ordered = sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
        fit.update(ordered[: math.ceil(len(ordered) / 3)])
    return fit


# --reading inferencex: SGLang collocated rows deployed as SemiAnalysis InferenceX's fixed-seq-len scripts deploy
# each model (benchmarks/single_node/fixed_seq_len/<model>_<precision>_<b200|b300>.sh at commit 8eec0d4; the
# qwen3.5 BF16 B300 one at f89cdfe): --mem-fraction-static, --chunked-prefill-size and --max-prefill-tokens,
# --max-running-requests, --cuda-graph-max-bs, --scheduler-recv-interval (its rule on the concurrency), and for
# Qwen3.5 FP8 / FP4 --mamba-ssm-dtype bfloat16; every one passes --disable-radix-cache and none --enable-mixed-chunk.
# None: the flag is not passed (the engine's default; a sequence cap then stays the row's, as the client never
# exceeds it). SGLang asserts the recv interval off with attention DP (srt/managers/scheduler_recv_skipper.py), so
# DP rows keep 1. A model or layout without a script, or a run with more clients than its script's
# --max-running-requests (which that script version could not have served without queueing: e.g. DeepSeek-R1 FP8
# TP8 runs at 256 and 512 clients of 2026-03-25, against the 128 of the 8eec0d4 script), takes the DeepSeek-R1
# scripts' chunk and recv-interval rules only.
def _every(c: int) -> int:
    return 30 if c >= 16 else 10


INFERENCEX_SGLANG: dict[tuple[str, str, str, int | None], dict[str, Any]] = {
    # (family, precision, system or "*", TP or None): mem, chunk (= max prefill unless given), running, graphs, recv
    ("DeepSeek-V3/R1", "fp8-block", "*", 8): dict(mem=0.82, chunk=32768, running=128, graphs=128, recv=_every),
    ("DeepSeek-V3/R1", "fp8-block", "*", 4): dict(mem=0.95, chunk=8192, running=32, graphs=32, recv=lambda c: 10),
    ("DeepSeek-V3/R1", "nvfp4", "*", None): dict(mem=0.85, chunk=16384, running=256, graphs=256, recv=_every),
    ("GLM-5", "nvfp4", "*", None): dict(mem=0.9, chunk=32768, running=None, graphs=256, recv=lambda c: 10),
    ("GLM-5", "fp8-block", "*", None): dict(mem=0.85, chunk=32768, running="conc", graphs="conc", recv=None),
    ("Qwen3.5", "bf16", "*", None): dict(mem=0.82, chunk=32768, running=128, graphs="conc", recv=_every),
    ("Qwen3.5", "fp8-block", "b200_sxm", None): dict(mem=0.8, chunk=16384, running=None, graphs="conc",
                                                     recv=lambda c: 30 if c > 4 else 10, ssm="bf16"),
    ("Qwen3.5", "fp8-block", "b300_sxm", None): dict(mem=0.8, chunk=16384, running="conc", graphs="conc",
                                                     recv=lambda c: 10, ssm="bf16"),
    ("Qwen3.5", "nvfp4", "b200_sxm", None): dict(mem=0.8, chunk=16384, running=None, graphs="conc",
                                                 recv=lambda c: 30 if c > 4 else 10, ssm="bf16"),
    ("Qwen3.5", "nvfp4", "b300_sxm", None): dict(mem=0.8, chunk=32768, running=128, graphs="conc", recv=_every,
                                                 ssm="bf16"),
}


def _inferencex_script(family: str, precision: str, system: str, tp: int) -> dict[str, Any] | None:
    for key in ((family, precision, system, tp), (family, precision, system, None), (family, precision, "*", tp),
                (family, precision, "*", None)):
        if key in INFERENCEX_SGLANG:
            return INFERENCEX_SGLANG[key]
    return None


def _inferencex_sglang(lay: Layout, precision: str, concurrency: int, family: str = "", system: str = ""
                       ) -> dict[str, Any]:
    script = _inferencex_script(family, precision, system, lay.gpus)
    if script is not None and isinstance(script["running"], int) and concurrency > script["running"]:
        script = None  # more clients than that script's --max-running-requests: measured with another version of it
    if script is None:  # the DeepSeek-R1 scripts' rules (dsr1_fp8_b200.sh, dsr1_fp4_b200.sh)
        fp8 = precision != "nvfp4"
        chunk = (32768 if lay.gpus >= 8 else 8192) if fp8 else 16384
        interval = 10 if concurrency < 16 or (fp8 and lay.gpus < 8) else 30
        kw: dict[str, Any] = dict(chunked_prefill_size=chunk, max_prefill_tokens=chunk, enable_mixed_chunk=False)
        if lay.attention_dp == 1:
            kw["scheduler_recv_interval"] = interval
        return kw
    chunk = script["chunk"]
    kw = dict(chunked_prefill_size=chunk, max_prefill_tokens=chunk, enable_mixed_chunk=False,
              memory_fraction=script["mem"], prefix_caching=False)
    for knob, value in (("max_running_requests", script["running"]), ("cuda_graph_max_bs", script["graphs"])):
        if value is not None:
            kw[knob] = concurrency if value == "conc" else value
    if script["recv"] is not None and lay.attention_dp == 1:
        kw["scheduler_recv_interval"] = script["recv"](concurrency)
    if script.get("ssm"):
        kw["mamba_ssm_dtype"] = script["ssm"]
    return kw


def _inferencex_collocated(engine: str, family: str, lay: Layout, cap: int, isl: int, precision: str,
                           concurrency: int, system: str = "") -> dict[str, Any]:
    """Collocated rows' knobs as InferenceX's fixed-seq-len scripts pass them (benchmarks/single_node/fixed_seq_len/
    *.sh, commit 8eec0d4 and earlier); a knob a script does not pass keeps the engine's default (the row's
    sequence cap is kept where the script passes none, as the client never exceeds it)."""
    from phasewise.specs.engines import graph_knobs, knob_values

    dp = lay.attention_dp
    if engine == "sglang":
        return {**knob_values(engine, max_seqs=cap),
                **_inferencex_sglang(lay, precision, concurrency, family, system)}
    rank_cap = -(-cap // dp)  # vLLM's and TensorRT-LLM's caps are each attention-DP rank's (PER_RANK_KNOBS)
    if engine == "vllm":
        if family == "gpt-oss":  # gptoss_fp4_b200.sh: max-num-batched-tokens 8192, max-num-seqs 512
            return dict(max_num_batched_tokens=8192, max_num_seqs=max(512, rank_cap))
        if family == "Kimi-K2.5" and precision == "nvfp4":  # kimik2.5_fp4_*.sh: max-num-seqs CONC, budget 2 x ISL
            return dict(max_num_batched_tokens=max(2 * isl, cap), max_num_seqs=rank_cap)
        if family == "Kimi-K2.5":  # kimik2.5_int4_*.sh: max-num-seqs CONC only
            return dict(max_num_seqs=rank_cap)
        return dict(max_num_batched_tokens=max(2 * isl, cap), max_num_seqs=max(1024, rank_cap))  # minimaxm2.5: 2 x ISL
    # both TRT-LLM scripts: cuda_graph_config {enable_padding: true, max_batch_size: CONC} (per attention-DP rank)
    graphs = graph_knobs("trtllm", max(1, concurrency // max(dp, 1)))
    if family == "gpt-oss":  # gptoss_fp4_b200_trt.sh: max_batch_size 512, max_num_tokens 20000 (per rank); with attention DP
        # attention_dp_config {enable_balance: true} (timeout_iters and batching_wait_iters at their defaults)
        balance = dict(attention_dp_enable_balance=True) if dp > 1 else {}
        return dict(max_batch_size=max(512, rank_cap), max_num_tokens=20000, **graphs, **balance)
    # dsr1_*_b200_trt.sh: max_num_tokens = max(8192, CONC + ISL + 64 rounded up to 64) (per attention-DP rank, as
    # TensorRT-LLM and phasewise read it); max_batch_size not passed (the default, per rank);
    # with attention DP: attention_dp_config {batching_wait_iters: 0, enable_balance: true, timeout_iters: 60}
    balance = dict(attention_dp_enable_balance=True, attention_dp_timeout_iters=60,
                   attention_dp_batching_wait_iters=0) if dp > 1 else {}
    return dict(max_batch_size=max(2048, rank_cap), max_num_tokens=max(8192, -(-(concurrency + isl + 64) // 64) * 64),
                **graphs, **balance)


def _knobs(engine: str, role: str, lay: Layout, cap: int, isl: int, batch_rank: int, reading: str = "aic",
           precision: str = "", concurrency: int = 1, family: str = "", system: str = "") -> dict[str, Any]:
    from phasewise.specs.engines import graph_knobs, knob_values

    dp = lay.attention_dp
    kw = knob_values(engine, max_seqs=cap, attention_dp=dp)
    if role == "collocated" and reading == "inferencex":
        kw = _inferencex_collocated(engine, family, lay, cap, isl, precision, concurrency, system)
    elif role == "collocated":
        if engine == "sglang":  # SGLang's --max-prefill-tokens is each attention-DP rank's own (specs/engine_config.py)
            kw.update(max_prefill_tokens=isl + AIC_MARGIN, enable_mixed_chunk=True)
        else:
            kw.update(knob_values(engine, token_budget=dp * (batch_rank + isl + AIC_MARGIN), attention_dp=dp))
    elif role == "prefill":
        if engine == "sglang":
            kw.update(max_prefill_tokens=isl + AIC_MARGIN)
        else:
            kw.update(knob_values(engine, token_budget=dp * (isl + AIC_MARGIN), attention_dp=dp))
    elif engine == "trtllm":  # decode: "decode max_num_tokens = max_batch_size"
        kw.update(knob_values(engine, token_budget=cap, attention_dp=dp))
    if role != "prefill" and reading == "aic":
        # AIConfigurator's trtllm.rule: CUDA graphs with padding up to the worker's max_bs (per attention-DP rank)
        kw.update(graph_knobs(engine, max(1, batch_rank)))
    if engine == "sglang" and dp > 1 and lay.ep > NODE_GPUS:  # wide EP read as DeepEP's (the note by AIC_MARGIN)
        kw["moe_a2a_backend"] = "deepep"
    return kw


# An SGLang group whose weights do not fit at the engine's default --mem-fraction-static (what phasewise computes
# from the GPU, chunk, graphs and layout) was launched with a larger one: the row was measured, and AIConfigurator's
# SGLang templates (generator/config/backend_templates/sglang/cli_args*.j2) pass none. Such a group takes 0.95, the
# value InferenceX's DeepSeek-R1 FP8 script passes for the same model on 4 GPUs (INFERENCEX_SGLANG), the largest any
# of its SGLang scripts passes. Three fit rows need it (DeepSeek-V3 FP8 prefill on 4 GB200 GPUs, attention DP 4 and
# MoE TP 4: weights 169.9 GiB per GPU against 0.811 x 185 GiB at the default); no held-out row does (with --reading
# aic four held-out DeepSeek-R1 FP8 rows on 4 B200 GPUs do too, which the provenance reading deploys as InferenceX's
# script, at 0.95).
SGLANG_MEMORY_FALLBACK = INFERENCEX_SGLANG[("DeepSeek-V3/R1", "fp8-block", "*", 4)]["mem"]


@cache
def _fits_at_default(model: str, group_json: str, kv_tokens_held: int = 0) -> bool:
    """Whether an SGLang group (as a deployment YAML holds it, JSON-encoded) fits at the engine's default memory
    fraction, its KV pool holding `kv_tokens_held` tokens (the run's own clients' share, `_held_tokens`)."""
    from phasewise.errors import PhasewiseError
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import build_group

    dep = build_deployment({"model": model, "instances": [json.loads(group_json)]})
    try:
        kv_capacity_tokens = build_group(dep, dep.instances[0], 0)[1]
    except PhasewiseError as exc:
        if "does not fit in memory" in str(exc):
            return False
        raise
    return kv_capacity_tokens >= kv_tokens_held


def _held_tokens(role: str, r: dict[str, str], workers: int) -> int:
    """The KV tokens a group's instance held in the measured run, from the row's own inputs (its clients, prompt and
    output lengths; no measured figure): a collocated or decode instance its share of the clients' whole sequences,
    a prefill instance one prompt. A deployment sized for its clients holds them: one whose pool at SGLang's default
    fraction cannot, and at SGLANG_MEMORY_FALLBACK can, was deployed with the larger fraction (where neither holds
    them the run queued whichever it had, and the default stays): since 2026-12-07, when the pool became the default
    fraction of the memory free after the runtime's start (SGLang's profile_max_num_token), DeepSeek-V3 FP8 on 4 GB200
    GPUs keeps 6,481 tokens where its 8 disaggregated clients hold 16,384."""
    isl, osl = int(r["isl"]), int(r["osl"])
    if role == "prefill":
        return isl
    return -(-int(r["concurrency"]) // max(workers, 1)) * (isl + osl)


def deployment(r: dict[str, str], m: Mapped, model: str, hw: str, precision: str, reading: str = "aic",
               notes: list[str] | None = None) -> dict[str, Any]:
    groups = []
    for role, lay in m.layouts.items():
        g: dict[str, Any] = dict(role=role, hardware=hw, tp=lay.gpus, replicas=m.workers[role], engine=r["backend"],
                                 precision=precision)
        if precision in FP8_KV:
            g["kv_dtype"] = "fp8"
        if lay.attention_dp > 1:
            g["attention_dp"] = lay.attention_dp
        if lay.ep > 1:
            g["ep"] = lay.ep
        g.update(_knobs(r["backend"], role, lay, m.caps[role], int(r["isl"]),
                        m.caps[role] // max(lay.attention_dp, 1), reading, precision, int(r["concurrency"]),
                        FAMILY.get(r["model_path"], ""), r["system"]))
        held = _held_tokens(role, r, m.workers[role])
        alone = dict(g, role="collocated", replicas=1)
        if g["engine"] == "sglang" and "memory_fraction" not in g and \
                not _fits_at_default(model, json.dumps(alone, sort_keys=True), held) and \
                (not _fits_at_default(model, json.dumps(alone, sort_keys=True))
                 or _fits_at_default(model, json.dumps(dict(alone, memory_fraction=SGLANG_MEMORY_FALLBACK),
                                                       sort_keys=True), held)):
            g["memory_fraction"] = SGLANG_MEMORY_FALLBACK
            if notes is not None:
                notes.append(f"{role}: mem_fraction_static {SGLANG_MEMORY_FALLBACK:g} (the default does not hold "
                             "the run's clients)")
        groups.append(g)
    data: dict[str, Any] = {"model": model, "instances": groups}
    if r["mode"] == "disagg":
        total = sum(m.layouts[k].gpus * m.workers[k] for k in m.layouts)
        data["kv_link"] = "nvlink" if r["system"] in NVL72 or total <= NODE_GPUS else "rdma"
    return data


def load_cases(path: Path = CSV_PATH, rounds: int = 10, warmup_rounds: int = 2, reading: str = "aic"
               ) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Cases for the in-scope rows phasewise can cost; every other in-scope row as ('csv', id, skip reason)."""
    rows = [r for r in vc.read_rows(path) if in_scope(r)]
    kept: dict[tuple, dict[str, str]] = {}
    for r in rows:  # the first twin that is not squared-encoded wins
        k = measurement_key(r)
        if k not in kept or (_squared(kept[k]) and not _squared(r)):
            kept[k] = r
    mapped: dict[str, Mapped | str] = {}
    for r in rows:
        try:
            mapped[r["id"]] = map_row(r)
        except ValueError as exc:
            mapped[r["id"]] = str(exc)
    first = {id(r) for r in kept.values()}
    # --reading provenance: a collocated measurement served from the engine's own image on any of its twin rows
    # (launched_without_dynamo) is deployed as InferenceX's scripts deploy it, every other one as AIConfigurator's
    # generator does; the client sends fixed lengths to all (the CSV's README: "fixed prompt and output lengths")
    inferencex_runs = {measurement_key(r) for r in rows if launched_without_dynamo(r)}
    fit = split_configs([(r, mapped[r["id"]]) for r in rows
                         if id(r) in first and isinstance(mapped[r["id"]], Mapped)])
    cases, skipped = [], []
    for r in rows:
        m = mapped[r["id"]]
        why = None
        if id(r) not in first:
            why = "duplicate measurement (its twin row is kept)"
        elif isinstance(m, str):
            why = m
        elif r["model_path"] in NOT_COSTED:
            why = NOT_COSTED[r["model_path"]]
        elif mtp := probable_mtp(r):
            why = mtp
        elif r["backend"] not in vc.ENGINES:
            why = f"backend '{r['backend']}' not mapped"
        prec = row_precision(r)
        if why is None and prec is None:
            why = vc.quant_precision(r, vc.is_dense(r["model_path"]))[1] or f"precision {r['precision']} not mapped"
        model = hw = None
        if why is None:
            model = vc.resolve_model(r["model_path"])
            hw = vc.resolve_hardware(vc.HARDWARE_NAMES.get(r["system"], (r["system"],)))
            if model is None:
                why = f"model '{r['model_path']}' not in the catalog"
            elif hw is None:
                why = f"hardware '{r['system']}' not in the catalog yet"
        if why is not None:
            skipped.append(("csv", r["id"], why))
            continue
        c = int(r["concurrency"])
        key = config_key(r, m)
        row_reading = reading
        if reading == "provenance":  # InferenceX's collocated scripts are the ones modelled (_inferencex_collocated)
            row_reading = "inferencex" if r["mode"] == "agg" and measurement_key(r) in inferencex_runs else "aic"
        family = FAMILY.get(r["model_path"], r["model_path"].split("/")[-1])
        notes = ["squared layout columns read as " + m.layouts["collocated"].text()] \
            if any(lay.squared for lay in m.layouts.values()) else []
        notes += [f"{role}: moe_tp {lay.gpus} / moe_ep 1 columns read as EP {lay.ep} (WIDE_EP_COLUMNS)"
                  for role, lay in m.layouts.items() if lay.wide_ep]
        cases.append({
            "source": "csv", "id": r["id"], "group": f"{family}:{r['mode']}:{r['backend']}", "family": family,
            "mode": r["mode"], "engine": r["backend"], "model": model, "model_stated": r["model_path"],
            "hardware": hw, "system": r["system"], "precision": prec, "layout": m.key(),
            "tp": max(lay.gpus for lay in m.layouts.values()), "replicas": sum(m.workers.values()),
            "isl": int(r["isl"]), "osl": int(r["osl"]), "concurrency": c, "requests": rounds * c,
            "warmup": warmup_rounds * c, "client": "inferencex" if reading == "inferencex" else "genai-perf",
            "measured_ttft_ms": float(r["silicon_ttft_ms"]), "measured_tpot_ms": float(r["silicon_tpot_ms"]),
            "split": "fit" if key in fit else "test", "config": key, "notes": notes,
            "version": r["backend_version"] or f"unstated, measured {r.get('measured_on', '')[:7] or '?'}",
            "deployment": deployment(r, m, model, hw, prec, row_reading, notes),
        })
    return cases, skipped


def dense_case(case: dict[str, Any]) -> dict[str, Any]:
    """A dense collocated row of validate_concurrency.py, labelled as this harness's tables group its rows (family
    'dense', mode 'agg'); it keeps its own split (validate_concurrency.py's, fixed before these rows existed)."""
    return dict(case, family="dense", mode="agg", group=f"dense:agg:{case['engine']}",
                layout=f"collocated:{case['replicas']}x{case['tp']}g")


def _squared(r: dict[str, str]) -> bool:
    try:
        return any(lay.squared for lay in map_row(r).layouts.values())
    except ValueError:
        return False


def layout_evidence(path: Path = CSV_PATH) -> tuple[int, int, int]:
    """(squared rows, squared rows with a twin, twins whose layout is the squared reading's) over the whole CSV."""
    rows = vc.read_rows(path)
    by_key: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_key[measurement_key(r)].append(r)
    squared = with_twin = agree = 0
    for r in rows:
        if r["mode"] != "agg" or not _squared(r):
            continue
        squared += 1
        twins = [t for t in by_key[measurement_key(r)] if t is not r and not _squared(t)]
        if twins:
            with_twin += 1
            mine = instance_layout(r)
            agree += all(_safe_layout(t) == Layout(mine.gpus, mine.attention_dp, mine.ep) for t in twins)
    return squared, with_twin, agree


def _safe_layout(r: dict[str, str]) -> Layout | None:
    try:
        return instance_layout(r)
    except ValueError:
        return None


# --- tables ---------------------------------------------------------------------------------------------------
def print_rows(cases, results, fitted=None) -> None:
    print(f"\n{'group':<30} {'model':<18} {'hw':<6} {'prec':<9} {'layout':<30} {'isl/osl':>10} {'C':>5} | "
          f"{'TTFT ms':>9} {'pred':>9} {'err':>6} | {'TPOT ms':>7} {'pred':>7} {'err':>6} | split"
          + ("  | fitted TTFT  TPOT" if fitted else ""))
    order = sorted(range(len(cases)), key=lambda i: (cases[i]["group"], cases[i]["system"], cases[i]["precision"],
                                                     cases[i]["layout"], cases[i]["isl"], cases[i]["osl"],
                                                     cases[i]["concurrency"]))
    for i in order:
        c, r = cases[i], results[i]
        line = (f"{c['group']:<30} {c['model_stated'].split('/')[-1][:18]:<18} {c['hardware'][:6]:<6} "
                f"{c['precision']:<9} {c['layout'][:30]:<30} {c['isl']:>5}/{c['osl']:<4} {c['concurrency']:>5} | "
                f"{c['measured_ttft_ms']:>9.1f} {r['ttft']:>9.1f} {vc.fmt_pct(vc.rel_err(r['ttft'], c['measured_ttft_ms'])):>6} | "
                f"{c['measured_tpot_ms']:>7.2f} {r['tpot']:>7.2f} {vc.fmt_pct(vc.rel_err(r['tpot'], c['measured_tpot_ms'])):>6} | "
                f"{c['split']}")
        if fitted:
            f = fitted[i]
            line += (f"  | {vc.fmt_pct(vc.rel_err(f['ttft'], c['measured_ttft_ms'])):>11} "
                     f"{vc.fmt_pct(vc.rel_err(f['tpot'], c['measured_tpot_ms'])):>5}")
        if r["error"]:
            line += f"  ! {r['error']}"
        if c["notes"]:
            line += "  [" + "; ".join(c["notes"]) + "]"
        print(line)


def print_tables(cases, columns) -> None:
    """Per family x mode x engine, then per family x mode (vc.print_table over relabelled copies)."""
    vc.print_table(cases, columns)
    coarse = [dict(c, group=f"{c['family']}:{c['mode']}") for c in cases]
    vc.print_table(coarse, columns)


def concurrency_bucket(c: int) -> str:
    return "C<=8" if c <= 8 else "C16-64" if c <= 64 else "C128-512" if c <= 512 else "C>=1024"


def print_regimes(cases, results) -> None:
    """Signed median errors (bias) by mode x engine x concurrency band, every split together: where the model is
    off and in which direction (diagnosis, not accuracy)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        groups[(c["mode"], c["engine"], concurrency_bucket(c["concurrency"]))].append(i)
    print(f"\n{'mode':<7} {'engine':<7} {'band':<9} {'n':>4} | {'TTFT bias':>9} {'meas-pred ms':>12} | {'TPOT bias':>9}")
    for key in sorted(groups, key=lambda k: (k[0], k[1], ("C<=8", "C16-64", "C128-512", "C>=1024").index(k[2]))):
        idx = [i for i in groups[key] if not results[i]["error"]]
        if not idx:
            continue
        med = lambda xs: float(np.median(xs))  # noqa: E731
        t = med([vc.rel_err(results[i]["ttft"], cases[i]["measured_ttft_ms"]) for i in idx])
        gap = med([cases[i]["measured_ttft_ms"] - results[i]["ttft"] for i in idx])
        p = med([vc.rel_err(results[i]["tpot"], cases[i]["measured_tpot_ms"]) for i in idx])
        print(f"{key[0]:<7} {key[1]:<7} {key[2]:<9} {len(idx):>4} | {t:>+9.0%} {gap:>12.0f} | {p:>+9.0%}")


def repeatability(cases: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """The same deployment measured more than once: cases alike in configuration (engine, mode, model, system,
    precision, instances), lengths and concurrency whose measured means differ (bit-identical copies were kept once),
    each pair's relative difference |a / b - 1| taken the symmetric way (exp |ln a / b| - 1), by whether the two
    state the same release or not ({'same' | 'other': {'ttft' | 'tpot': [differences]}}): how far a prediction can
    be from one measurement while as close as another measurement of that deployment is."""
    runs: dict[tuple, dict[tuple, str]] = defaultdict(dict)
    for c in cases:
        measured = (c["measured_ttft_ms"], c["measured_tpot_ms"])
        if "version" in c and min(measured) > 0:  # (--with-dense's rows come without their release: left out)
            deployment = (c["config"], c["precision"], c["isl"], c["osl"], c["concurrency"])
            runs[deployment].setdefault(measured, c["version"])
    out: dict[str, dict[str, list[float]]] = {kind: {"ttft": [], "tpot": []} for kind in ("same", "other")}
    for measured in runs.values():
        items = list(measured.items())
        for i, ((ttft_a, tpot_a), release_a) in enumerate(items):
            for (ttft_b, tpot_b), release_b in items[i + 1:]:
                pair = out["same" if release_a == release_b else "other"]
                pair["ttft"].append(math.exp(abs(math.log(ttft_a / ttft_b))) - 1)
                pair["tpot"].append(math.exp(abs(math.log(tpot_a / tpot_b))) - 1)
    return out


def print_repeatability(cases: list[dict[str, Any]]) -> None:
    found = repeatability(cases)
    if not any(pairs["ttft"] for pairs in found.values()):
        print("  none measured twice")
    for kind, pairs in found.items():
        if not pairs["ttft"]:
            continue
        ttft, tpot = np.array(pairs["ttft"]), np.array(pairs["tpot"])
        print(f"  {len(ttft):>4} pairs stating {'the same release' if kind == 'same' else 'two releases'}: TTFT "
              f"differs {np.median(ttft):.0%} (median; p90 {np.quantile(ttft, 0.9):.0%}), TPOT "
              f"{np.median(tpot):.0%} (p90 {np.quantile(tpot, 0.9):.0%})")


def print_versions(cases, results) -> None:
    """Median errors by engine x stated engine version (the CSV's backend_version; a row without one by the month it
    was measured), every split together: whether the model's error follows a release (diagnosis, not accuracy;
    the presets model one version of each engine, engine_presets.yaml)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        if not results[i]["error"]:
            groups[(c["engine"], c.get("version", "(dense rows: not read)"))].append(i)
    print(f"\n{'engine':<7} {'version':<28} {'n':>4} | {'TTFT bias':>9} {'|err|':>6} | {'TPOT bias':>9} {'|err|':>6}")
    for key in sorted(groups):
        idx = groups[key]
        ttft = [vc.rel_err(results[i]["ttft"], cases[i]["measured_ttft_ms"]) for i in idx]
        tpot = [vc.rel_err(results[i]["tpot"], cases[i]["measured_tpot_ms"]) for i in idx]
        print(f"{key[0]:<7} {key[1][:28]:<28} {len(idx):>4} | {np.median(ttft):>+9.0%} {np.median(np.abs(ttft)):>6.0%} | "
              f"{np.median(tpot):>+9.0%} {np.median(np.abs(tpot)):>6.0%}")


# --- main -----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=vc.at_least(1), default=2, help="processes (1 = in this process)")
    ap.add_argument("--limit", type=vc.at_least(1), default=None, help="only the first N covered rows (CSV order)")
    ap.add_argument("--engine", choices=vc.ENGINES, default=None)
    ap.add_argument("--mode", choices=MODES, default=None)
    ap.add_argument("--family", default=None, help="only this model family (e.g. DeepSeek-V3/R1, Kimi-K2.5)")
    ap.add_argument("--split", choices=("fit", "test"), default=None, help="only fit or held-out rows")
    ap.add_argument("--max-concurrency", type=vc.at_least(1), default=None, help="only rows with concurrency <= this")
    ap.add_argument("--every", type=vc.at_least(1), default=1, help="every k-th covered row (a spread-out subset)")
    ap.add_argument("--rounds", type=vc.at_least(1), default=10, help="requests per row = rounds x concurrency")
    ap.add_argument("--warmup-rounds", type=vc.at_least(0), default=2, help="warm-up requests = this x concurrency")
    ap.add_argument("--large-c", type=vc.at_least(1), default=None,
                    help="rows at this concurrency or more simulate only --large-c-rounds x C requests (a quick, "
                    "biased look: off by default)")
    ap.add_argument("--large-c-rounds", type=vc.at_least(1), default=None,
                    help="requests per large-C row = this x concurrency (default 2; only with --large-c)")
    vc.add_constant_options(ap)
    ap.add_argument("--reading", choices=("aic", "inferencex", "provenance"), default="provenance",
                    help="how the rows were deployed and measured: aic = AIConfigurator's generator and genai-perf "
                         "(fixed lengths); inferencex = SemiAnalysis InferenceX's scripts and client (lengths "
                         "uniform in [0.8 L, L], SGLang's scheduler-recv-interval, TensorRT-LLM's attention-DP "
                         "balance); provenance = InferenceX's engine flags for the collocated measurements served "
                         "from the engine's own image (not Dynamo's, which AIConfigurator's generator launches), "
                         "AIConfigurator's for the rest, fixed lengths for all (the CSV README's statement)")
    ap.add_argument("--with-dense", action="store_true",
                    help="add validate_concurrency.py's dense collocated CSV rows (their own fit / held-out split, "
                         "the same filters), so that --fit fits the shared constants on both sets of fit rows")
    ap.add_argument("--no-rows", action="store_true", help="print only the summary tables")
    ap.add_argument("--layout-evidence", action="store_true", help="count the squared rows' twins and exit")
    ap.add_argument("--csv", type=vc.output_csv, default=None,
                    help="write every row's prediction (and every skipped row) here (an output file)")
    vc.add_rows_option(ap)
    args = vc.rows_args(ap, argv)
    if args.large_c_rounds is not None and args.large_c is None:
        ap.error("--large-c-rounds applies only with --large-c (rows at that concurrency or more)")
    args.large_c_rounds = 2 if args.large_c_rounds is None else args.large_c_rounds

    if not args.rows.exists():
        print(vc.rows_missing(args.rows), file=sys.stderr)
        return 2
    if args.layout_evidence:
        squared, twins, agree = layout_evidence(args.rows)
        print(f"squared-encoded agg rows: {squared}; with a bit-identical twin: {twins}; twins laid out as the "
              f"squared reading says: {agree}")
        return 0
    cases, skipped = load_cases(args.rows, args.rounds, args.warmup_rounds, args.reading)
    fit_keys = sorted({c["config"] for c in cases if c["split"] == "fit"})
    n_configs = len({c["config"] for c in cases})
    if args.with_dense:
        cases = cases + [dense_case(c) for c in vc.load_csv_cases(args.rows, args.rounds, args.warmup_rounds)[0]]
    families = sorted({c["family"] for c in cases})
    if args.family is not None and args.family not in families:
        raise SystemExit(f"--family {args.family}: no covered row is of it (covered: {', '.join(families)})")
    sel = [c for c in cases if (args.engine is None or c["engine"] == args.engine)
           and (args.mode is None or c["mode"] == args.mode) and (args.family is None or c["family"] == args.family)
           and (args.split is None or c["split"] == args.split)
           and (args.max_concurrency is None or c["concurrency"] <= args.max_concurrency)]
    sel = sel[:: args.every]
    for i, c in enumerate(sel):
        if args.large_c is not None and c["concurrency"] >= args.large_c and args.large_c_rounds < args.rounds:
            sel[i] = dict(c, requests=args.large_c_rounds * c["concurrency"],
                          notes=c["notes"] + [f"N = {args.large_c_rounds} x C (large-C bound)"])
    if args.limit is not None:
        sel = sel[: args.limit]
    if args.with_dense and not any(c["family"] == "dense" for c in sel):
        dense = [c for c in cases if c["family"] == "dense"]
        keeps = {"--family": lambda c: c["family"] == args.family, "--mode": lambda c: c["mode"] == args.mode,
                 "--engine": lambda c: c["engine"] == args.engine, "--split": lambda c: c["split"] == args.split,
                 "--max-concurrency": lambda c: c["concurrency"] <= args.max_concurrency}
        given = {"--family": args.family, "--mode": args.mode, "--engine": args.engine, "--split": args.split,
                 "--max-concurrency": args.max_concurrency}
        filters = [f"{flag} {given[flag]}" for flag, keep in keeps.items()
                   if given[flag] is not None and not any(map(keep, dense))]
        filters = filters or [f"{flag} {value}" for flag, value in (("--every", args.every if args.every > 1 else None),
                                                                    ("--limit", args.limit)) if value is not None]
        filters = filters or ["the filters together"]
        verb = "selects" if len(filters) == 1 and filters[0].startswith("--") else "select"
        raise SystemExit(f"--with-dense adds the dense collocated rows (family 'dense', mode agg, after the MoE rows), "
                         f"but {' and '.join(filters)} {verb} none of them: "
                         "drop --with-dense, or select them too (--family dense for the dense rows alone)")

    import phasewise

    print(__doc__.splitlines()[0])
    print(f"simulator: {Path(phasewise.__file__).parent}")
    bound = f" ({args.large_c_rounds} x C at C >= {args.large_c})" if args.large_c is not None else ""
    print(f"constants: {args.constants}; N = {args.rounds} x C requests from C closed-loop clients{bound}, "
          f"warm-up {args.warmup_rounds} x C")
    print(f"fit split: {len(fit_keys)} of {n_configs} covered configurations are 'fit' (per backend x mode, "
          f"sha256 order, first third), the rest held out")
    print(f"\ncoverage: {len(cases)} in-scope rows costed ({len(sel)} selected), {len(skipped)} skipped")
    for why, n in Counter(why for _, _, why in skipped).most_common():
        print(f"  skipped {n:>5}: {why}")
    by = Counter((c["group"], c["split"]) for c in cases)
    for g in sorted({c["group"] for c in cases}):
        print(f"  covered {g:<34} fit {by[(g, 'fit')]:>4}  test {by[(g, 'test')]:>4}")
    print("repeatability (the selected rows' deployments measured more than once, every split):")
    print_repeatability(sel)
    if not sel:
        print("nothing to simulate")
        return 1

    results, fitted, fitted_consts, wall = vc.run_cases(sel, args)
    failed = [(c, r) for c, r in zip(sel, results) if r["error"]]
    print(f"\nsimulated {len(sel)} rows in {wall:.0f} s wall ({args.workers} workers); {len(failed)} failed")
    for why, n in Counter(r["error"] for _, r in failed).most_common(8):
        print(f"  failed {n:>4}: {why}")
    if not args.no_rows:
        print_rows(sel, results, fitted)
    def tables(cases, columns) -> None:
        print_tables(cases, columns)
        print_regimes(cases, results)
        print_versions(cases, results)

    vc.report(args, sel, results, fitted, fitted_consts, skipped, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
