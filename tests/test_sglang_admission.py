"""SGLang's admission, retraction and idle behaviour as its scheduler runs them (srt/managers/schedule_policy.py
PrefillAdder.add_one_req / _update_prefill_budget, scheduler.py update_running_batch and self_check_during_idle)."""

from __future__ import annotations

import dataclasses

import numpy as np

from phasewise.sim import kv_admission
from phasewise.sim.api import build
from phasewise.sim.schedulers import sglang as sglang_scheduler
from phasewise.sim.simulate import simulate

ISL, OSL = 500, 4000


def _run(**kw):
    spec = build(engine="sglang", **kw)
    return simulate(spec.deployment, spec.workload, spec.slo)


def test_a_new_prompt_reserves_its_whole_clipped_output_and_so_do_the_prompts_admitted_with_it():
    """add_one_req refuses a prompt unless prompt + min(max_new_tokens, 4096) fits what is left, and every prompt
    admitted in the same pass is charged its whole clipped output: only the running batch's is scaled by the
    new-token ratio. 16 requests of 500 + 4000 tokens at t=0 on a small cache: the first prefill batch takes as many
    as fit whole (it had taken all 16 and then retracted 14)."""
    # 0.23 of the memory free after the runtime starts (SGLang's profile_max_num_token; 0.225 of the whole GPU before)
    result = _run(concurrency=16, requests=16, isl=ISL, osl=OSL, memory_fraction=0.23)
    capacity_tokens = result.instances[0].kv_capacity_blocks  # SGLang's page is one token
    first_batch = int(np.sum(result.scheduled_s == 0.0))
    assert first_batch == capacity_tokens // (ISL + OSL) == 5  # 24,902 tokens
    assert int(result.preemptions.sum()) < 14


def test_a_retracted_request_waits_at_the_tail_of_the_queue(monkeypatch):
    """update_running_batch puts the retracted requests back with _extend_requests_to_queue (the tail): with every
    request queued at t=0, each is admitted once before any retracted request is admitted again (vLLM's
    prepend_request puts them at the head instead)."""
    admissions = []
    original = kv_admission.KvAdmission.try_admit

    def record(self, req, extra_blocks=0):
        admitted = original(self, req, extra_blocks)
        if admitted:
            admissions.append((self.loop.now, req.preemptions))
        return admitted

    monkeypatch.setattr(kv_admission.KvAdmission, "try_admit", record)
    result = _run(concurrency=40, requests=40, isl=ISL, osl=2000, memory_fraction=0.225)
    assert int(result.preemptions.sum()) > 0
    first = [t for t, times in admissions if times == 0]
    again = [t for t, times in admissions if times > 0]
    assert len(first) == 40 and again
    assert min(again) >= max(first)


def test_an_idle_pass_resets_the_new_token_ratio(monkeypatch):
    """A request arriving after the server went idle is admitted at init_new_token_ratio (0.7), not at the floor the
    previous request's decode steps had decayed it to."""
    ratios = []
    original = sglang_scheduler.SglangScheduler.admission_extra_blocks

    def record(self, inst, req):
        ratios.append(self.new_token_ratio(inst))
        return original(self, inst, req)

    monkeypatch.setattr(sglang_scheduler.SglangScheduler, "admission_extra_blocks", record)
    spec = build(engine="sglang", rate=1.0, requests=2, isl=100, osl=700)
    work = dataclasses.replace(spec.workload, arrival_s=np.array([0.0, 60.0]))
    result = simulate(spec.deployment, work, spec.slo)
    assert float(result.finish_s[0]) < 60.0
    assert ratios[0] == ratios[-1] == 0.7


def test_a_disaggregated_prefill_server_reserves_one_output_token_a_prompt(monkeypatch):
    """SGLang's prefill server sets every request's max_new_tokens to 1 (disaggregation/prefill.py _process_req), so
    its PrefillAdder keeps one token free for each prompt admitted in the pass and for the new one, not their clipped
    outputs; the decode server's admission is its own."""
    seen = []
    original = sglang_scheduler.SglangScheduler.admission_extra_blocks

    def record(self, inst, req):
        extra = original(self, inst, req)
        seen.append((inst.role, extra, len(inst.prefilling)))
        return extra

    monkeypatch.setattr(sglang_scheduler.SglangScheduler, "admission_extra_blocks", record)
    result = _run(arch="disagg", prefill_workers=1, decode_workers=1, concurrency=8, requests=16, isl=ISL,
                  osl=OSL)
    assert result.summary()["completed"] == 16
    prefill = [(extra, queued) for role, extra, queued in seen if role == "prefill"]
    assert prefill and all(extra == queued + 1 for extra, queued in prefill)  # a page is one token
