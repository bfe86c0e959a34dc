"""The digital twin under guidellm (a benchmark client no one here wrote), against `phasewise
simulate` replaying the very arrivals guidellm produced.

    python benchmarks/bench_twin_guidellm.py --guidellm /path/to/venv/bin/guidellm [--streams 500 --requests 1000]

guidellm needs an offline Hugging Face tokenizer: a tiny byte-level BPE is trained on the spot (with the
guidellm environment's `tokenizers`/`transformers`), and the twin counts prompt tokens with the same
tokenizer.json and serves the model under the tokenizer directory's name (guidellm loads its tokenizer
from the model name). guidellm runs a concurrent profile (chat completions, streaming, ignore_eos) and
writes every request's send time, prompt/output tokens, TTFT and inter-token latency; the same requests,
at the same send times, then go through `simulate()` on the same deployment.
(guidellm 0.8.1 installs beside torch==2.13.0: pip install guidellm==0.8.1 torch==2.13.0.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from twin_server import start_twin

MODEL = "meta-llama/Llama-3.1-8B"
TOKENIZER_SCRIPT = r'''
import sys, this, codecs
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
from transformers import PreTrainedTokenizerFast
out = sys.argv[1]
text = codecs.decode(this.s, "rot13")
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([text] * 50, trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "</s>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save(out + "/tokenizer.json")
PreTrainedTokenizerFast(tokenizer_file=out + "/tokenizer.json", bos_token="<s>", eos_token="</s>").save_pretrained(out)
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--guidellm", default=shutil.which("guidellm") or "/tmp/gl-venv/bin/guidellm")
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--output-tokens", type=int, default=64)
    args = ap.parse_args()
    if not Path(args.guidellm).exists():
        sys.exit(f"guidellm not found at {args.guidellm}: pip install guidellm==0.8.1 torch==2.13.0 (in a separate venv)")
    work = Path(tempfile.mkdtemp(prefix="twin-guidellm-"))
    tok = work / "tok"
    tok.mkdir()
    gl_python = str(Path(args.guidellm).parent / "python")
    subprocess.run([gl_python, "-c", TOKENIZER_SCRIPT, str(tok)], check=True, capture_output=True)
    server, port = start_twin("--model", MODEL, "--max-num-seqs", "256", "--tokenizer", str(tok / "tokenizer.json"),
                              "--served-model-name", str(tok))
    out_json = work / "guidellm.json"
    try:
        cmd = [args.guidellm, "run", "--backend", f"kind=openai_http,target=http://127.0.0.1:{port},model={tok}",
               "--profile", f"kind=concurrent,streams={args.streams}",
               "--data", f"kind=synthetic_text,prompt_tokens={args.prompt_tokens},output_tokens={args.output_tokens}",
               "--constraint", f"kind=max_requests,count={args.requests}",
               "--output", f"kind=json,path={out_json}", "--disable-console-interactive"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=10)

    bench = json.loads(out_json.read_text())["benchmarks"][0]
    reqs = bench["requests"]
    ok = sorted(reqs["successful"], key=lambda r: r["request_start_time"])
    lost = len(reqs["errored"]) + len(reqs["incomplete"])
    starts = np.array([r["request_start_time"] for r in ok])
    prompts = np.array([r["prompt_tokens"] for r in ok])
    outputs = np.array([r["output_tokens"] for r in ok])
    ttft = np.array([r["time_to_first_token_ms"] for r in ok])
    itl = np.array([r["inter_token_latency_ms"] for r in ok])  # per request: (last - first) / (n - 1)

    from phasewise.sim import simulate
    from phasewise.sim.deployment import collocated
    from phasewise.workload import Workload

    sim = simulate(collocated(MODEL, "h100-sxm", max_num_seqs=256), Workload(starts - starts[0], prompts, outputs))
    sim_ttft, sim_tpot = sim.ttft_s * 1e3, sim.tpot_s * 1e3
    malformed = int((outputs != args.output_tokens).sum())
    print(f"guidellm concurrent@{args.streams}: {len(ok)} ok, {lost} lost, {malformed} with a wrong token count; "
          f"{wall:.1f} s wall; prompt tokens {prompts.mean():.0f} (server count), output {outputs.mean():.0f}")
    print(f"{'metric':16} {'guidellm':>9} {'simulate':>9} {'error':>8}")
    errs = []
    for name, a, b in (("TTFT", ttft, sim_ttft), ("ITL (per req.)", itl, sim_tpot)):
        for label, f in (("mean", np.mean), ("p50", lambda x: np.percentile(x, 50)),
                         ("p90", lambda x: np.percentile(x, 90)), ("p95", lambda x: np.percentile(x, 95))):
            g, p = float(f(a)), float(f(b))
            errs.append(abs(p / g - 1))
            print(f"{name + ' ' + label:16} {g:9.1f} {p:9.1f} {p / g - 1:+8.1%}")
    print(f"median |error| {np.median(errs):.1%}, max {max(errs):.1%}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
