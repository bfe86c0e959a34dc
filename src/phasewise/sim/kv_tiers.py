"""KV tiers below the GPU's prefix cache (sim/prefix_cache.py): a host-memory tier per instance (vLLM's CPU offloading
connector, SGLang's HiCache, TensorRT-LLM's host cache) and a KV store shared by a deployment's instances (Mooncake
Store, LMCache's remote backend, SGLang HiCache's storage backend). Each holds trace prefix blocks (keys), least
recently used dropped first, and knows what copying one back to a GPU costs."""

from __future__ import annotations

from collections import OrderedDict

from phasewise.errors import PhasewiseError
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.sim.link import effective_bandwidth


class HostTier:
    """Prefix blocks kept in host memory (least recently used first) and what copying them back costs."""

    __slots__ = ("capacity_keys", "load_s_per_key", "on_evict", "exclusive", "write_after_uses", "uses",
                 "sync_writes", "keys", "written_keys", "dropped_keys", "hit_keys", "load_s", "pending_write_s",
                 "beyond_node")

    def __init__(self, capacity_keys: int, load_s_per_key: float, on_evict: bool = False,
                 sync_writes: bool = False, exclusive: bool = True, write_after_uses: int = 1) -> None:
        self.capacity_keys = capacity_keys  # trace prefix blocks the host memory holds
        self.load_s_per_key = load_s_per_key  # seconds to copy one over the PCIe link (each GPU its own share)
        # written as the GPU evicts a block (TensorRT-LLM, SGLang's write_back), instead of written through as
        # prompts cache blocks (vLLM, SGLang's default): EngineConfig.host_kv_write
        self.on_evict = on_evict
        self.exclusive = exclusive  # written on eviction: moved back out when copied back (TensorRT-LLM), or kept
        # written through: at a block's n-th use (SGLang's write_through_selective: 2), its uses counted while the
        # GPU holds it
        self.write_after_uses = write_after_uses
        self.uses: dict[int, int] = {}
        # the next forward waits for the writes (TensorRT-LLM's syncTransfers); else they run in the background
        self.sync_writes = sync_writes
        self.pending_write_s = 0.0  # writes the next forward waits for (sync_writes)
        self.keys: OrderedDict[int, None] = OrderedDict()
        self.written_keys = 0  # blocks written to host memory (not already there)
        self.dropped_keys = 0  # blocks evicted from host memory
        self.hit_keys = 0  # leading prompt blocks found only in host memory (first admissions)
        self.load_s = 0.0  # copy-back time charged to those admissions
        self.beyond_node: str | None = None  # why the tier asks more host memory than its GPUs' node has

    def use(self, key: int) -> None:
        """A block a prompt uses, written through: kept (keep) from its `write_after_uses`-th use."""
        if self.write_after_uses > 1 and key not in self.keys:
            count = self.uses.get(key, 0) + 1
            if count < self.write_after_uses:
                self.uses[key] = count
                return
            self.uses.pop(key, None)
        self.keep(key)

    def keep(self, key: int) -> None:
        """A block a prompt uses: kept here, the most recently used (written unless already here), the least
        recently used dropped beyond the capacity."""
        keys = self.keys
        if key in keys:
            keys.move_to_end(key)
            return
        keys[key] = None
        self.written_keys += 1
        if self.sync_writes:
            self.pending_write_s += self.load_s_per_key
        if len(keys) > self.capacity_keys:
            keys.popitem(last=False)
            self.dropped_keys += 1


def host_tier(inst) -> HostTier | None:
    """The instance's host-memory tier from its group's `host_kv_cache_bytes` (all its GPUs' host memory for KV, as
    vLLM's --kv-offloading-size counts it), or None. A trace prefix block takes its KV bytes on every GPU that holds
    a share of it (attention TP x PP ranks); each GPU copies its share back over its own PCIe link at the link
    efficiency collectives reach (as the online trainer's activation offload, sim/online_training.py)."""
    host_bytes = inst.group.host_kv_cache_bytes
    if not host_bytes:
        return None
    _has_tier(inst, "--host-kv-cache-gb")
    cost = inst.cost
    per_gpu, gpus = _block_bytes(inst), _gpus(inst)
    capacity = int(host_bytes // (per_gpu * gpus))
    if capacity < 1:
        raise PhasewiseError(f"--host-kv-cache-gb {host_bytes / 1e9:g}: one {inst.cluster.prefix_block_tokens}-token "
                             f"prefix block of {cost.model.name} takes {per_gpu * gpus / 1e9:.3g} GB on this "
                             f"instance's {gpus} GPU{'s' if gpus > 1 else ''}; give at least that")
    engine = inst.engine
    write = engine.host_kv_write  # through | selective | evict | back (specs/engine_config.py EngineConfig)
    tier = HostTier(capacity, per_gpu / effective_bandwidth(cost, "pcie"), on_evict=write in ("evict", "back"),
                    sync_writes=write == "back" or engine.host_kv_load == "serial", exclusive=write == "evict",
                    write_after_uses=2 if write == "selective" else 1)
    tier.beyond_node = beyond_node(cost.hw, host_bytes, gpus)
    return tier


def beyond_node(hw, host_bytes: float, gpus: int) -> str | None:
    """Why `host_bytes` of host KV tier on `gpus` GPUs of `hw` is more than their share of the reference node's host
    memory (each GPU its share, as the node's other GPUs serve too), or None (it fits, or the node is not known)."""
    room = hw.host_memory_per_gpu_bytes
    if room is None or host_bytes / gpus <= room:
        return None
    node = hw.interconnect
    return (f"--host-kv-cache-gb {host_bytes / 1e9:g} is {host_bytes / gpus / 1e9:,.0f} GB of host memory per GPU; "
            f"each {hw.key} node has {node.host_memory_bytes_per_node / 1e9:,.0f} GB for its {node.gpus_per_node} "
            f"GPUs, {room / 1e9:,.0f} GB a GPU with 10 GiB kept free: a what-if beyond that node (a node with more: "
            f"interconnect.host_memory_bytes_per_node in a hardware YAML)")


def kv_store(deployment, caching: list) -> HostTier | None:
    """The deployment's shared KV store (`kv_store_bytes`: host memory across the cluster holding the prefix blocks
    every instance that admits prompts puts there, written through as prompts cache them, as a Mooncake Store or
    LMCache remote backend is filled by its prefill instances), sized in blocks of the first caching instance's
    layout; None without one. `caching`: the instances with a prefix cache."""
    store_bytes = deployment.kv_store_bytes
    if not store_bytes:
        return None
    if not caching:
        raise PhasewiseError("--kv-store-gb (kv_store_bytes) shares prefix blocks between instances: it needs prefix "
                             "caching on the instances that admit prompts; add --prefix-caching on")
    for inst in caching:
        _has_tier(inst, "--kv-store-gb")
    per_key = _block_bytes(caching[0]) * _gpus(caching[0])
    capacity = int(store_bytes // per_key)
    if capacity < 1:
        raise PhasewiseError(f"--kv-store-gb {store_bytes / 1e9:g}: one {caching[0].cluster.prefix_block_tokens}-token "
                             f"prefix block takes {per_key / 1e9:.3g} GB; give at least that")
    return HostTier(capacity, 0.0)


def store_fetch_s(inst) -> float:
    """Seconds for `inst` to fetch one prefix block from the shared store: each GPU its share over its own network
    link (RDMA, at the link efficiency collectives reach)."""
    return _block_bytes(inst) / effective_bandwidth(inst.cost, "rdma")


def _block_bytes(inst) -> float:
    """KV bytes of one prefix block (the cluster's prefix_block_tokens) on one GPU of `inst` (its attention TP x PP
    share)."""
    cost = inst.cost
    per_token = kv_bytes_per_token(cost.model, cost.quant, cost.layout.attention_tp, cost.pp)
    return inst.cluster.prefix_block_tokens * per_token


def _gpus(inst) -> int:
    return inst.cost.layout.attention_tp * inst.cost.pp


# which engines keep a host-memory KV tier, for the refusals (engine_presets.yaml host_kv_load per version)
HOST_TIER_RELEASES = ("vLLM's CPU offloading connector is first in 0.11.0: --engine vllm@0.11 or later; SGLang's "
                      "HiCache and TensorRT-LLM 1.x's host cache have one")


def _has_tier(inst, flag: str) -> None:
    if inst.engine.host_kv_load is None:
        raise PhasewiseError(f"{flag}: {inst.engine.label} keeps no host-memory KV tier ({HOST_TIER_RELEASES})")
