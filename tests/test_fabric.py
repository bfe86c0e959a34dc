"""KV transfers over ports (sim/fabric.py): each transfer through its sender's and its receiver's lanes, every port
shared max-min fairly; in a deployment, several prefill replicas sending to one decode replica share its lanes."""

import numpy as np
import pytest

from phasewise.sim import cluster as cluster_module
from phasewise.sim.api import run
from phasewise.sim.events import EventLoop
from phasewise.sim.fabric import Fabric, Port


def _finish_times(transfers: list[tuple[Port, Port | None, float, float]]) -> list[float]:
    """(sender, receiver, bytes, start s) each -> when its done() ran."""
    loop, done = EventLoop(), {}
    fabric = Fabric(loop)
    for key, (sender, receiver, nbytes, start) in enumerate(transfers):
        loop.at(start, lambda k=key, s=sender, r=receiver, b=nbytes: fabric.send(
            k, s, r, b, lambda k=k: done.__setitem__(k, loop.now)))
    loop.run()
    return [done[k] for k in range(len(transfers))]


def test_a_receiver_shared_by_two_senders_halves_each_and_max_min_gives_the_rest():
    a, b = Port("a", 10.0, latency_s=0.5), Port("b", 10.0)
    one, two = Port("one", 10.0), Port("two", 10.0)
    assert _finish_times([(a, one, 10.0, 0.0)]) == [pytest.approx(1.5)]  # 1 s at 10 B/s, then a's latency
    # a and b into one receiver: 5 B/s each; into two receivers, 10 each (the old per-sender link gave 10 either way)
    assert _finish_times([(a, one, 10.0, 0.0), (b, one, 10.0, 0.0)]) == [pytest.approx(2.5), pytest.approx(2.0)]
    assert _finish_times([(a, one, 10.0, 0.0), (b, two, 10.0, 0.0)]) == [pytest.approx(1.5), pytest.approx(1.0)]
    # max-min: a sends to one and two, b to one: 'one' holds two flows (5 each), a's flow to 'two' takes a's other 5
    # at first; once one's flows end, nothing is left
    wide = Port("wide", 100.0)
    times = _finish_times([(a, one, 5.0, 0.0), (b, one, 5.0, 0.0), (a, wide, 5.0, 0.0)])
    assert times == [pytest.approx(1.5), pytest.approx(1.0), pytest.approx(1.5)]
    # no receiver: each sender's bandwidth over its transfers, as a plain link
    assert _finish_times([(b, None, 10.0, 0.0), (b, None, 10.0, 0.5)]) == [pytest.approx(1.5), pytest.approx(2.0)]


def test_prefill_replicas_sending_to_one_decode_replica_share_its_lanes(monkeypatch):
    """Llama-2-7B over RDMA (one H100's 50 GB/s x 0.8), 3,000-token prompts: 4, 8, 16 prefill replicas into one
    decode replica. Its ingress stays within its lanes (it reached 2.8x them: one link per sender), and TTFT rises
    once the senders' offered KV passes them."""
    arrived = []
    original = cluster_module.Cluster._arrived

    def record(self, req, src, dst):
        arrived.append((self.loop.now, self.kv_transfer_bytes(req.prompt + req.generated, src)))
        return original(self, req, src, dst)

    monkeypatch.setattr(cluster_module.Cluster, "_arrived", record)
    ttft = {}
    for senders in (4, 16):
        arrived.clear()
        result = run(model="meta-llama/Llama-2-7b-hf", arch="disagg", prefill_workers=senders, decode_workers=1,
                     kv_link="rdma", rate=4.5 * senders, requests=40 * senders, isl=3000, osl=4)
        times, nbytes = np.array([t for t, _ in arrived]), np.array([b for _, b in arrived])
        low, high = np.percentile(times, [20, 80])
        middle = (times >= low) & (times <= high)
        ingress = nbytes[middle].sum() / (high - low)
        assert ingress <= 50e9 * 0.8 * 1.02
        ttft[senders] = result.summary()["ttft_ms"]["mean"]
    assert ttft[16] > 5 * ttft[4]
