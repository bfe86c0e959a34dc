"""`phasewise validate --pipeline 2`: a real model split over two OS processes, checked against the split
simulator (sim/split_pipeline.py).

Two stage processes (multiprocessing 'spawn', one torch thread each, so on a 2-core machine each has its core)
build the same Llama-shaped transformers model (or LFM2's short-conv hybrid) from its config with a fixed seed
(random weights, fp32) and keep only their layers: stage 0 the embedding and layers [0, k), stage 1 layers [k,
L), the final norm and the LM head. Stage 0 sends hidden states to stage 1 over a local TCP socket (127.0.0.1,
ephemeral port) through a sender thread throttled by a token bucket at the link rate, so stage 0 computes the
next sub-sequence while the previous one is on the wire, as a NIC would let it. The sampled token id returns
over the same socket, unthrottled (8 bytes). Prefill cuts the prompt into S sub-sequences; each stage keeps a
KV cache (an LFM2 stage its conv layers' states too), so sub-sequence j attends to those before it. TTFT:
stage 0 starts -> stage 1 has sampled the first token (both processes read the same monotonic clock). Decode:
the token goes back to stage 0 and through both stages again; per-token latency is the mean gap between tokens
sampled at stage 1.

A message keeps no credit from the link's idle time (TokenBucket.begin): each 4 KiB chunk leaves once its
own serialisation time at the link rate has passed, so a message of B bytes takes B/R as on a real link and
as the simulator charges it, however small (with an idle credit of one chunk a decode step's 2 KB hidden state
went through at once: an 80 Mbit/s "20 Mbit/s" link). Within a message the bucket is one chunk deep, so a
sleep that overshoots is made up on the next chunk. Python sends chunk by chunk, so the rate holds up to a few hundred Mbit/s on this kind of machine
(1 MiB at 20 / 200 Mbit/s: within 2 % of B/R; at 1000 Mbit/s it took 1.8x).

The prediction: the same split in the simulator, two devices of the given (calibrated) hardware joined by
one link at the throttled rate whose per-message latency is measured on the check's own message path before
the runs (info's `socket_one_way_latency_s`): unthrottled round trips of a decode step's messages, a hidden state of
hidden_size fp32 values out (serialised with .numpy().tobytes(), handed to the sender thread, sent, received,
rebuilt with torch.frombuffer) and an 8-byte token id back, each after both processes idled (as pipeline
stages wait for each other), half the median round trip. That is a property of the link (syscalls, thread
hand-off, waking an idle process: ~0.2 ms each way here vs ~30 us back to back), measured, not fitted to
the runs.
"""

from __future__ import annotations

import multiprocessing
import queue
import socket
import statistics
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import DEFAULT_HOST_ALLOCATOR, host_allocator_mode, use_host_allocator
from phasewise.measure.torch_env import kv_cache_arg, need_transformers, torch_and_device

HEADER = struct.Struct("<qq")  # (kind, payload bytes)
HIDDEN, TOKEN, PING = 1, 2, 3
CHUNK_BYTES = 4096  # the token bucket's depth: at most this many bytes leave at once
STARTUP_TIMEOUT_S = 120.0
SOCKET_TIMEOUT_S = 120.0


class TokenBucket:
    """Bytes leave at `rate_bytes_per_s` on average; the bucket holds at most `depth_bytes` tokens. Kept as the
    time the bucket was last empty (the generic cell-rate form), so a sleep that overshoots is credited to the
    next chunk, not lost. `begin()` empties it at the start of a message: a transfer of B bytes takes B / rate
    (a real link's serialisation time), not (B - depth) / rate after an idle gap."""

    def __init__(self, rate_bytes_per_s: float, depth_bytes: int = CHUNK_BYTES) -> None:
        self.rate_bytes_per_s, self.depth_bytes = rate_bytes_per_s, depth_bytes
        self.empty_s = time.perf_counter() - depth_bytes / rate_bytes_per_s  # starts full

    def take(self, nbytes: int) -> None:
        """Block until `nbytes` (<= depth) tokens are in the bucket, then spend them."""
        now = time.perf_counter()
        self.empty_s = max(self.empty_s, now - self.depth_bytes / self.rate_bytes_per_s)  # full at most
        ready_s = self.empty_s + nbytes / self.rate_bytes_per_s
        if ready_s > now:
            time.sleep(ready_s - now)
        self.empty_s += nbytes / self.rate_bytes_per_s

    def begin(self) -> None:
        """A message starts: drop the credit the idle link gathered (none is kept across messages)."""
        self.empty_s = max(self.empty_s, time.perf_counter())


def send_throttled(sock: socket.socket, bucket: TokenBucket | None, kind: int, payload: bytes) -> None:
    data = memoryview(HEADER.pack(kind, len(payload)) + payload)
    if bucket is not None:
        bucket.begin()
    for start in range(0, len(data), CHUNK_BYTES):
        chunk = data[start:start + CHUNK_BYTES]
        if bucket is not None:
            bucket.take(len(chunk))
        sock.sendall(chunk)


def receive(sock: socket.socket) -> tuple[int, bytearray]:
    def exactly(nbytes: int) -> bytearray:
        buf, got = bytearray(nbytes), 0
        view = memoryview(buf)
        while got < nbytes:
            n = sock.recv_into(view[got:])
            if n == 0:
                raise ConnectionError("the other stage closed the socket")
            got += n
        return buf

    kind, nbytes = HEADER.unpack(exactly(HEADER.size))
    return kind, exactly(nbytes)


class Sender:
    """A thread draining a queue of messages through the token bucket (the link), so compute goes on."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.bucket = sock, None
        self.todo: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.todo.get()
            if item is None:
                return
            send_throttled(self.sock, self.bucket, *item)

    def send(self, kind: int, payload: bytes) -> None:
        self.todo.put((kind, payload))

    def close(self) -> None:
        self.todo.put(None)
        self.thread.join(timeout=SOCKET_TIMEOUT_S)


FAMILIES = ("llama", "lfm2")  # the transformers models a stage is built as (pipeline_validate picks)


def _build_stage(config: dict[str, Any], stage: int, boundary: int, family: str = "llama"):
    """The full model from `config` with seed 0, cut down to stage `stage`'s layers: a LlamaForCausalLM, or an
    Lfm2ForCausalLM (short-conv and attention layers, config["layer_types"]; each stage's config keeps its own
    layers' types, so its cache holds a conv state for its conv layers and KV for its attention layers)."""
    import torch

    transformers = need_transformers()
    torch.manual_seed(0)
    if family == "lfm2":
        hf = transformers.Lfm2ForCausalLM(transformers.Lfm2Config(**config)).float().eval()
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).float().eval()
    layers = hf.model.layers
    keep = list(layers[:boundary]) if stage == 0 else list(layers[boundary:])
    for index, layer in enumerate(keep):  # each stage's cache counts its own layers from 0
        mixer = layer.conv if family == "lfm2" and not layer.is_attention_layer else layer.self_attn
        mixer.layer_idx = index
    hf.model.layers = torch.nn.ModuleList(keep)
    hf.config.num_hidden_layers = len(keep)
    if family == "lfm2":
        types = list(config["layer_types"])
        hf.config.layer_types = types[:boundary] if stage == 0 else types[boundary:]
    if stage == 0:
        if family == "lfm2":
            hf.model.embedding_norm = torch.nn.Identity()  # LFM2's final norm
        else:
            hf.model.norm = torch.nn.Identity()
        hf.lm_head = None
    else:
        hf.model.embed_tokens = None
    return hf


def stage_main(stage: int, config: dict[str, Any], boundary: int, control, family: str = "llama",
               host_allocator: str = DEFAULT_HOST_ALLOCATOR) -> None:
    """A stage process: set up the socket, then obey commands from `control` (a Pipe end) until 'stop'. It measures
    under its parent's host allocator (a spawned process starts with the C library's defaults)."""
    allocator_note = use_host_allocator(host_allocator)
    torch, _ = torch_and_device("cpu", 1)
    transformers = need_transformers()
    sock = None
    try:
        hf = _build_stage(config, stage, boundary, family)
        kv_arg = kv_cache_arg(hf.model)
        # an LFM2 stage of conv layers only: transformers builds an attention mask from the cache's attention layers,
        # of which it has none; its conv layers take no mask (the stage's forward is otherwise the same)
        masks = ({"attention_mask": {"full_attention": None, "conv": None}}
                 if family == "lfm2" and "full_attention" not in hf.config.layer_types else {})
        if stage == 1:
            listener = socket.create_server(("127.0.0.1", 0))
            listener.settimeout(STARTUP_TIMEOUT_S)
            control.send(("port", listener.getsockname()[1]))
            sock, _ = listener.accept()
            listener.close()
        else:
            _, port = control.recv()
            sock = socket.create_connection(("127.0.0.1", port), timeout=STARTUP_TIMEOUT_S)
        sock.settimeout(SOCKET_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        control.send(("ready", allocator_note))
        sender = Sender(sock)
        hidden_size = config["hidden_size"]
        with torch.inference_mode():
            while True:
                command, args = control.recv()
                if command == "stop":
                    break
                if command == "ping":  # unthrottled round trips of a decode step's messages: the link's latency
                    round_trips, floats, idle_s = args
                    sender.bucket = None
                    times = []
                    for _ in range(round_trips):
                        if stage == 0:
                            time.sleep(idle_s)  # both ends idle, blocked as in a pipeline, before each message
                            start = time.perf_counter()
                            sender.send(PING, torch.zeros(1, 1, floats).contiguous().numpy().tobytes())
                            receive(sock)
                            times.append(time.perf_counter() - start)
                        else:
                            _, payload = receive(sock)
                            torch.frombuffer(payload, dtype=torch.float32)
                            send_throttled(sock, None, PING, torch.zeros(1, dtype=torch.int64).numpy().tobytes())
                    control.send(("ping", times))
                    continue
                lengths, decode_steps, rate_bytes_per_s = args
                sender.bucket = TokenBucket(rate_bytes_per_s)
                cache = transformers.DynamicCache(config=hf.config) if family == "lfm2" else transformers.DynamicCache()
                if stage == 0:
                    generator = torch.Generator().manual_seed(sum(lengths))
                    ids = torch.randint(0, config["vocab_size"], (1, sum(lengths)), generator=generator)
                    start_s = time.perf_counter()
                    offset = 0
                    for length in lengths:
                        hidden = hf.model(input_ids=ids[:, offset:offset + length], **{kv_arg: cache}, **masks,
                                          use_cache=True).last_hidden_state
                        sender.send(HIDDEN, hidden.contiguous().numpy().tobytes())
                        offset += length
                    for _ in range(decode_steps):
                        _, payload = receive(sock)
                        token = torch.frombuffer(payload, dtype=torch.int64).view(1, 1)
                        hidden = hf.model(input_ids=token, **{kv_arg: cache}, **masks, use_cache=True).last_hidden_state
                        sender.send(HIDDEN, hidden.contiguous().numpy().tobytes())
                    if decode_steps:
                        receive(sock)  # the last token
                    control.send(("started", start_s))
                else:
                    token_times = []
                    for step in range(len(lengths) + decode_steps):
                        _, payload = receive(sock)
                        hidden = torch.frombuffer(payload, dtype=torch.float32).view(1, -1, hidden_size)
                        out = hf.model(inputs_embeds=hidden, **{kv_arg: cache}, **masks,
                                       use_cache=True).last_hidden_state
                        if step < len(lengths) - 1:
                            continue
                        token = hf.lm_head(out[:, -1:]).argmax(-1)
                        token_times.append(time.perf_counter())
                        if decode_steps:
                            send_throttled(sock, None, TOKEN, token.to(torch.int64).numpy().tobytes())
                    control.send(("tokens", token_times))
        sender.close()
    except Exception as exc:  # reported to the parent, which raises it
        control.send(("error", f"stage {stage}: {type(exc).__name__}: {exc}"))
    finally:
        if sock is not None:
            sock.close()


@dataclass(slots=True)
class PipelineRun:
    ttft_s: float
    token_gap_s: float | None  # mean gap between decode tokens


class TwoStagePipeline:
    """Two stage processes joined by a throttled socket; a context manager that always reaps them."""

    def __init__(self, config: dict[str, Any], boundary: int, family: str = "llama") -> None:
        if family not in FAMILIES:
            raise PhasewiseError(f"pipeline family {family!r} is not one of {', '.join(FAMILIES)}")
        self.config, self.boundary, self.family = config, boundary, family
        self.processes: list = []
        self.controls: list = []
        self.stage_allocators: list[str] = []  # each stage's host allocator note, as the stage reports it

    def __enter__(self) -> TwoStagePipeline:
        context = multiprocessing.get_context("spawn")
        try:
            for stage in (0, 1):
                parent_end, child_end = context.Pipe()
                process = context.Process(target=stage_main, args=(stage, self.config, self.boundary, child_end,
                                                                   self.family, host_allocator_mode()),
                                          daemon=True, name=f"phasewise-stage{stage}")
                process.start()
                child_end.close()
                self.processes.append(process)
                self.controls.append(parent_end)
            port = self._expect(1, "port")
            self.controls[0].send(("port", port))
            self.stage_allocators = [self._expect(0, "ready"), self._expect(1, "ready")]
        except BaseException:
            self.close()
            raise
        return self

    def _expect(self, stage: int, what: str, timeout_s: float = STARTUP_TIMEOUT_S):
        control = self.controls[stage]
        if not control.poll(timeout_s):
            raise PhasewiseError(f"pipeline stage {stage}: no '{what}' within {timeout_s:.0f} s")
        try:
            kind, value = control.recv()
        except EOFError:
            raise PhasewiseError(f"pipeline stage {stage} exited (exit code "
                                 f"{self.processes[stage].exitcode}) before sending '{what}'") from None
        if kind == "error":
            raise PhasewiseError(f"pipeline {value}")
        if kind != what:
            raise PhasewiseError(f"pipeline stage {stage}: expected '{what}', got '{kind}'")
        return value

    def one_way_latency_s(self, floats: int = 1, round_trips: int = 50, idle_s: float = 0.0) -> float:
        """Half the median unthrottled round trip of `floats` fp32 values out (as a hidden state goes: serialised,
        through the sender thread) and an 8-byte token id back (as a sampled token goes), each after `idle_s`
        with both processes blocked."""
        if floats < 1 or round_trips < 1 or idle_s < 0:
            raise PhasewiseError(f"ping: floats ({floats}), round trips ({round_trips}) must be >= 1, idle_s "
                                 f"({idle_s}) >= 0")
        for control in self.controls:
            control.send(("ping", (round_trips, floats, idle_s)))
        times = self._expect(0, "ping")
        self._expect(1, "ping")
        return statistics.median(times) / 2

    def run(self, lengths: list[int], decode_steps: int, link_mbps: float) -> PipelineRun:
        for control in self.controls:
            control.send(("run", (lengths, decode_steps, link_mbps * 1e6 / 8)))
        token_times = self._expect(1, "tokens")
        start_s = self._expect(0, "started")
        gaps = [b - a for a, b in zip(token_times, token_times[1:])]
        return PipelineRun(token_times[0] - start_s, statistics.fmean(gaps) if gaps else None)

    def close(self) -> None:
        for control in self.controls:
            try:
                control.send(("stop", None))
            except (OSError, ValueError):
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for control in self.controls:
            control.close()

    def __exit__(self, *exc) -> None:
        self.close()
