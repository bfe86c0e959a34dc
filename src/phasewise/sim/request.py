"""A request's state inside the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field

NAN = float("nan")


@dataclass(slots=True, eq=False)
class SimRequest:
    id: int
    arrival_s: float
    prompt: int
    output: int
    priority: int = 0
    client: int = -1  # closed-loop client id, -1 for open loop
    generated: int = 0  # output tokens emitted so far
    prefilled: int = 0  # tokens of the current prefill attempt processed (chunked prefill)
    first_token_s: float = NAN
    scheduled_s: float = NAN  # first time any of its tokens entered an iteration
    finish_s: float = NAN
    preemptions: int = 0
    kv_blocks: int = 0  # blocks held on the instance it is on
    kv_excess: int = 0  # blocks held beyond its first decode step's need when it joined
    # when its KV is ready where it runs (NaN: it never waited for any): disaggregation, when the transfer reached the
    # decode instance; an engine that loads a cached prefix from host memory asynchronously, when that copy is done
    # (no chunk of it before)
    kv_ready_s: float = NAN
    # decode participation: on its instance, decode steps [join_step, join_step + steps)
    join_step: int = 0
    join_context: int = 0  # cached tokens at its first decode step there
    spec_steps: int = 0  # verify steps done before this segment (speculative decoding)
    epoch: int = 0  # bumps on preemption (invalidates heap entries)
    slot: int = -1  # index in its instance's running set
    last_instance: int = -1  # index of the instance it finished on
    first_instance: int = -1  # index of the instance it was first routed to (a collocated or prefill one)
    # tokens in emission order: (None, time) for a token sampled at the end of a prefill, or
    # (instance, first_step, steps, spec_offset, tokens) for a run of decode steps there
    segments: list = field(default_factory=list)
    src_blocks: int = 0  # disaggregation: blocks still held on the prefill instance during transfer
    streamed: int = 0  # live twin: tokens already notified
    cancelled: bool = False  # live twin: the client went away
    first_pending: bool = False  # disaggregation: its first token leaves with its first decode step (Cluster)
    handle: object = None  # live twin: the server's per-request state
    prefix: tuple | None = None  # its prompt's prefix block hashes (Mooncake traces); None: nothing to share
    prefix_keys: list | None = None  # its shareable prefix blocks' keys (sim/prefix_cache.py), computed on first lookup
    prefix_cache: object = None  # the prefix cache holding its references (sim/prefix_cache.py), while it holds any
    kv_load_s: float = 0.0  # its cached prefix's copy back from host memory, due with its first prefill chunk
    # prompt tokens its first admission found in a prefix cache (vLLM's num_cached_tokens, set once, at the first
    # scheduling); -1: not admitted yet, or admitted where no prefix cache is kept
    cached_tokens: int = -1
    # its images (workload/images.py): each one's encoder patches and prompt tokens (those in `prompt`, after its
    # text, as benchmark clients send them: text part first); images of the current prefill attempt encoded so far
    image_patches: tuple = ()
    image_tokens: tuple = ()
    images_done: int = 0
    images_remote: bool = False  # encoded by a disaggregated encode worker (sim/encode_pool.py): none to run here

    @property
    def prefill_target(self) -> int:
        """Tokens the current prefill attempt must process (recompute after preemption adds outputs)."""
        return self.prompt + self.generated
