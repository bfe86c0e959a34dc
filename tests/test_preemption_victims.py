"""Which running request a KV-starved engine preempts, on ties too: a closed-loop client releases its first C
requests together, so arrival times tie. vLLM V1 pops its running list's tail (the latest scheduled, a resumed one
included: `self.running.pop()`); V0 the latest arrival of its arrival-sorted queue; SGLang's retract_decode the
fewest decoded tokens, then the longest prompt, then the latest added (a stable reverse sort, popped from the end).
The first victim had been request 0, the first admitted and furthest along (slot 0 of an argmax over tied
arrivals), so the most work was recomputed."""

import pytest

from phasewise.sim.api import run
from phasewise.sim.schedulers.base import Scheduler
from phasewise.sim.schedulers.sglang import SglangScheduler
from phasewise.sim.schedulers.vllm import VllmV1Scheduler


def _victims(monkeypatch, cls, **kw) -> list[int]:
    chosen: list[int] = []
    original = cls.victim

    def spy(self, inst):
        index = original(self, inst)
        chosen.append(inst.running.reqs[index].id)
        return index

    monkeypatch.setattr(cls, "victim", spy)
    run(check_invariants=True, **kw)
    return chosen


def test_vllm_preempts_the_latest_admitted_when_arrivals_tie(monkeypatch):
    victims = _victims(monkeypatch, VllmV1Scheduler, engine="vllm", concurrency=16, requests=16, isl=2048, osl=512,
                       memory_fraction=0.27)
    # request 15 waits (no KV for it); 14, the last admitted of those running, goes first, then 13, 12
    assert victims[:3] == [14, 13, 12], victims


def test_sglang_retracts_the_latest_added_among_equals(monkeypatch):
    victims = _victims(monkeypatch, SglangScheduler, engine="sglang", concurrency=24, requests=24, isl=512, osl=512,
                       memory_fraction=0.215)
    assert victims and victims[0] != 0 and victims[0] > 10, victims  # the last added of the equals, not the first


@pytest.mark.parametrize("arrivals, admitted, expected", [
    ((0.0, 0.0, 0.0), (0, 1, 2), 2),   # tied arrivals: the latest admitted
    ((0.0, 5.0, 1.0), (2, 0, 1), 1),   # the latest arrival, whenever admitted (V0's arrival-sorted queue)
])
def test_the_base_victim_is_the_latest_arrival_then_the_latest_admitted(arrivals, admitted, expected):
    import numpy as np

    class Running:
        n = len(arrivals)

    class Inst:
        running = Running()

    Inst.running.arrival = np.array(arrivals)
    Inst.running.admitted = np.array(admitted)
    assert Scheduler.victim(Scheduler.__new__(Scheduler), Inst()) == expected
