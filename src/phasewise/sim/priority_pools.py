"""Priority pools with proactive offload (Ascendra, arXiv 2504.20828).

Arrivals go to the low-priority (LP) instances, which serve for throughput and out of arrival order
(e.g. shortest prefill first); high-priority (HP) instances run small chunks and small batches for
latency. At an LP instance's iteration boundary (at most every `check_interval_ms`) the controller runs
the LP instance's own cost model forward:

  waiting requests   the queue ahead of each in the LP order (partial prefills, then the shorter prompts)
                     is cut into iterations of the token budget left beside the decodes, each costed with
                     the decoding set as it is; under an out-of-order policy the prompts that will arrive
                     and pass it take their share of that capacity (the recent arrival rate of shorter
                     prompts' tokens, rho), so predicted first token = now + that time / (1 - rho). A request whose
                     TTFT slack (deadline - prediction) is below the margin moves to the HP instance that
                     predicts the earliest first token for it (its own FCFS queue costed the same way) if
                     that one meets the deadline; one that no pool can save stays (it would only delay HP).
  decoding requests  while prefills are queued (the iterations ahead are prefill-heavy), each decoding
                     request's finish is predicted from the prefill backlog's iterations and then pure
                     decode steps; a TPOT deadline (first token + (output - 1) x TBT SLO) missed by the
                     prediction moves it to HP, by KV transfer over the deployment's KV link or by
                     recompute there, whichever predicts the earlier next token (`migration: auto`).

Moves keep the request's bookkeeping: a waiting entry leaves one queue for another; a decoding request
leaves the LP decoding set as a preemption does (its decode segment recorded, a new epoch), and on HP
joins the decoding set once its KV arrives (the LP blocks are freed then) or re-prefills its prompt and
generated tokens at the head of HP's queue. Figures go to SimResult.policy["priority_pools"].
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape
from phasewise.sim.link import Link, link_rate
from phasewise.sim.metrics import Slo

ARRIVAL_WINDOW_S = 10.0  # recent arrivals that estimate how much later work passes a waiting prompt
MAX_PASSING_SHARE = 0.95  # (beyond it a prompt is predicted to wait 20x its queue: as good as starving)

if TYPE_CHECKING:
    from phasewise.sim.cluster import Cluster
    from phasewise.sim.deployment import PriorityPools
    from phasewise.sim.instance import Instance
    from phasewise.sim.request import SimRequest


def check_classes(class_slo_ms: list[tuple[float, float]] | None, priorities, where: str) -> None:
    """A one-line error where `class_slo_ms` gives the classes' SLOs and a request's class (its trace's priority)
    is past them: it would silently take the pools' default SLOs. `where`: the requests `priorities` are of
    (simulate checks its workload before the run)."""
    classes = len(class_slo_ms or ())
    beyond = sorted({int(p) for p in priorities if p >= classes}) if classes else []
    if beyond:
        listed = ", ".join(map(str, beyond[:8])) + (", ..." if len(beyond) > 8 else "")
        raise PhasewiseError(f"{where}: priority_pools.class_slo_ms gives {classes} classes (priorities "
                             f"0..{classes - 1}) and none for priority {listed}: give each class the trace uses its "
                             "[ttft_ms, tpot_ms]")


def headline_slo(config: PriorityPools | None, slo: Slo, flags: bool = False) -> Slo:
    """The run's SLOs, which its headline attainment scores: the priority_pools block's slo_ttft_ms / slo_tpot_ms where
    it sets them (the deadlines the pools steer by), else `slo`'s. `flags` (simulate's --slo-* flags): one given beside
    the block's own is refused, as serve refuses it (apps/cli_serve.py refuse_unread_slos); else (the Python API) one
    that differs from it."""
    if config is None:
        return slo
    own = {}
    for flag, field, name in (("--slo-ttft-ms", "slo_ttft_ms", "ttft_ms"), ("--slo-tpot-ms", "slo_tpot_ms", "tpot_ms")):
        block, given = getattr(config, field), getattr(slo, name)
        if block is None:
            continue
        if math.isfinite(given) and (flags or given != block):
            raise PhasewiseError(f"{flag} {given:g}: the deployment's priority_pools block sets its own {field} "
                                 f"({block:g}), which the pools steer by (and simulate's headline scores); drop one "
                                 "of them")
        own[name] = block
    return replace(slo, **own) if own else slo


class PoolController:
    __slots__ = ("config", "cluster", "loop", "lp", "hp", "links", "next_check_s", "default_slo_s", "class_slo_s",
                 "margin_s", "interval_s", "arrivals", "seen_id", "moved", "offloads_waiting", "migrations_transfer",
                 "migrations_recompute", "migration_s", "checks")

    def __init__(self, config: PriorityPools, cluster: Cluster, instances: list[Instance], slo: Slo | None) -> None:
        self.config, self.cluster, self.loop = config, cluster, cluster.loop
        self.lp = [i for i in instances if i.group.pool != "hp"]
        self.hp = [i for i in instances if i.group.pool == "hp"]
        ttft_ms = config.slo_ttft_ms or (slo.ttft_ms if slo else math.inf)
        tbt_ms = config.slo_tpot_ms or (slo.tpot_ms if slo else math.inf)
        self.default_slo_s = (ttft_ms / 1e3, tbt_ms / 1e3)
        self.class_slo_s = [(t / 1e3, b / 1e3) for t, b in config.class_slo_ms or []]
        if not self.class_slo_s and not (math.isfinite(ttft_ms) or math.isfinite(tbt_ms)):
            raise PhasewiseError("priority pools need SLOs to set deadlines: give --slo-ttft-ms and/or --slo-tpot-ms "
                                 "(or slo_ttft_ms / slo_tpot_ms / class_slo_ms in the priority_pools block)")
        self.margin_s = config.slack_margin_ms / 1e3
        self.interval_s = config.check_interval_ms / 1e3
        self.next_check_s = [0.0] * len(instances)
        self.arrivals = {i.index: deque() for i in self.lp}  # recent (arrival_s, prefill tokens) per LP instance
        self.seen_id = [-1] * len(instances)  # highest request id recorded as arrived, per LP instance
        self.links: dict[str, Link] = {}  # one outbound KV link per LP instance (its GPUs' link to the HP pool)
        hp_tp = min(i.group.tp for i in self.hp)
        for inst in self.lp:
            inst.controller = self
            bw, lat = link_rate(inst.cost.hw.interconnect, cluster.deployment.kv_link)
            lanes = min(inst.group.tp, hp_tp)
            self.links[inst.name] = Link(self.loop, bw * lanes * inst.cost.eff.link_efficiency, lat)
        self.moved: dict[int, tuple[float, float, float]] = {}  # request id -> (arrival_s, ttft SLO s, tbt SLO s)
        self.offloads_waiting = 0
        self.migrations_transfer = 0
        self.migrations_recompute = 0
        self.migration_s = 0.0  # predicted time of the migrations chosen (transfer or recompute), summed
        self.checks = 0

    def slo_s(self, req: SimRequest) -> tuple[float, float]:
        """(TTFT SLO s, TBT SLO s) of a request: its class's, else (no class_slo_ms) the pools' default."""
        if 0 <= req.priority < len(self.class_slo_s):
            return self.class_slo_s[req.priority]
        return self.default_slo_s

    # --- the hook: an LP instance is about to choose its next iteration ---------------------------------
    def on_step(self, lp: Instance) -> None:
        now = self.loop.now
        waiting = lp.waiting
        if waiting and waiting[-1].id > self.seen_id[lp.index]:
            self._record_arrivals(lp)
        if now < self.next_check_s[lp.index] or not (waiting or lp.running.n):
            return
        self.next_check_s[lp.index] = now + self.interval_s
        self.checks += 1
        if waiting:
            line = self.prefill_line(lp)
            queued = self._offload_waiting(lp, now, line)
        else:
            queued = self.queued_tokens(lp)
            if not queued:
                return  # pure decode iterations ahead: no prefill stalls them
            line = self.prefill_line(lp)
        if lp.running.n:
            self._migrate_decodes(lp, now, queued, line)

    def _record_arrivals(self, lp: Instance) -> None:
        """New arrivals sit at the tail of the queue (the policy reorders it only after this hook): record them."""
        seen, recent = self.seen_id[lp.index], self.arrivals[lp.index]
        new = []
        for req in reversed(lp.waiting):
            if req.id <= seen:
                break
            new.append((req.arrival_s, req.prefill_target))
        recent.extend(reversed(new))
        self.seen_id[lp.index] = lp.waiting[-1].id
        horizon = self.loop.now - ARRIVAL_WINDOW_S
        while recent and recent[0][0] < horizon:
            recent.popleft()

    def passing_share(self, lp: Instance, line: tuple[int, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """(sorted prefill tokens of recent arrivals, cumulative share of the LP's prefill capacity they take):
        the share taken by prompts shorter than s is share[searchsorted(tokens, s) - 1]."""
        recent = self.arrivals[lp.index]
        budget, full_s, _ = line
        if len(recent) < 2 or full_s <= 0:
            return np.empty(0), np.empty(0)
        span_s = max(self.loop.now - recent[0][0], ARRIVAL_WINDOW_S / 4)
        tokens = np.sort(np.fromiter((t for _, t in recent), dtype=np.float64, count=len(recent)))
        return tokens, np.cumsum(tokens) / span_s * full_s / budget

    # --- the performance model: the instance's own cost model run forward -------------------------------
    def iteration_s(self, inst: Instance, prefill_tokens: int) -> float:
        """One iteration of `inst`'s decoding set as it is plus `prefill_tokens` of prompt."""
        shape = inst._decode_shape() if inst.running.n else BatchShape()
        if prefill_tokens > 0:
            shape.add(prefill_tokens, 0, inst.model.causal, inst.window, logits=1)
        if shape.seqs == 0:
            return 0.0
        return inst.cost.fast(shape)[0]

    def prefill_line(self, inst: Instance) -> tuple[int, float, float]:
        """(prefill tokens per iteration beside the decodes, time of a full one, time of a decode-only one)."""
        budget = max(1, inst.engine.token_budget - inst.running.n * inst.decode_new_tokens)
        return budget, self.iteration_s(inst, budget), self.iteration_s(inst, 0)

    @staticmethod
    def prefill_s(tokens, line: tuple[int, float, float]):
        """Time to run `tokens` (a number or an array) of queued prefill in full iterations and a last partial
        one (interpolated between a decode-only and a full iteration)."""
        budget, full_s, bare_s = line
        whole, rest = np.divmod(tokens, budget)
        return whole * full_s + np.where(rest > 0, bare_s + (full_s - bare_s) * rest / budget, 0.0)

    @staticmethod
    def queued_tokens(inst: Instance) -> int:
        """Prefill tokens already queued on an instance (partial prefills' rest and every waiting prompt)."""
        return sum(r.prefill_target - r.prefilled for r in inst.prefilling) + \
            sum(r.prefill_target for r in inst.waiting)

    # --- waiting requests: TTFT ---------------------------------------------------------------------------
    def _offload_waiting(self, lp: Instance, now: float, line: tuple[int, float, float]) -> float:
        """Move the waiting requests predicted to miss their TTFT that HP saves; returns the prefill tokens
        queued on `lp` before the moves."""
        reorders = lp.scheduler.reorders
        if not self.class_slo_s:  # a bound first: the whole queue, slowed by every recent arrival, vs the earliest
            total = self.queued_tokens(lp)  # deadline (most checks end here, without visiting the queue twice)
            recent = self.arrivals[lp.index]
            rho = 0.0
            if reorders and len(recent) >= 2 and line[1] > 0:
                span_s = max(self.loop.now - recent[0][0], ARRIVAL_WINDOW_S / 4)
                rho = min(sum(t for _, t in recent) / span_s * line[1] / line[0], MAX_PASSING_SHARE)
            latest = now + float(self.prefill_s(total, line)) / (1.0 - rho)
            earliest_due = min(r.arrival_s for r in lp.waiting) + self.default_slo_s[0]
            if earliest_due - latest >= self.margin_s:
                return total
        if reorders:  # the policy's own order (its queue kept ordered: only new arrivals are placed)
            lp.scheduler.order(lp.waiting)
        order = list(lp.waiting)
        n = len(order)
        tokens = np.fromiter((r.prefill_target for r in order), dtype=np.float64, count=n)
        # the queue ahead of each: partial prefills' rest, then the prompts before it in the policy's order
        ahead = np.cumsum(tokens) + float(sum(r.prefill_target - r.prefilled for r in lp.prefilling))
        queue_s = self.prefill_s(ahead, line)
        if reorders:  # shorter prompts arriving meanwhile pass it: they take a share rho of the capacity
            passing, share = self.passing_share(lp, line)
            if len(passing):
                k = np.searchsorted(passing, tokens, side="left")
                rho = np.minimum(np.where(k > 0, share[np.maximum(k - 1, 0)], 0.0), MAX_PASSING_SHARE)
                queue_s = queue_s / (1.0 - rho)
        predicted = now + queue_s
        if self.class_slo_s:
            ttft = np.fromiter((self.slo_s(r)[0] for r in order), dtype=np.float64, count=n)
        else:
            ttft = self.default_slo_s[0]
        deadline = np.fromiter((r.arrival_s for r in order), dtype=np.float64, count=n) + ttft
        late = deadline - predicted < self.margin_s
        if not late.any():
            return float(ahead[-1])
        hp_lines = [self.prefill_line(h) for h in self.hp]
        hp_queued = [float(self.queued_tokens(h)) for h in self.hp]
        # HP's queues only grow as requests move: the earliest first token any HP instance offers now bounds
        # what it can offer later in this check (requests it cannot save are skipped at once)
        soonest = np.min([now + self.prefill_s(queued + tokens, hp_line)
                          for queued, hp_line in zip(hp_queued, hp_lines, strict=True)], axis=0)
        for i in np.flatnonzero(late & (soonest <= deadline) & (soonest < predicted)):
            req = order[i]
            if req.generated:  # a recompute: its TTFT is behind it
                continue
            best, best_s = -1, math.inf
            for k, h in enumerate(self.hp):
                if h.kv.blocks_for(req.prefill_target) > h.kv.capacity:
                    continue
                t = now + self.prefill_s(hp_queued[k] + req.prefill_target, hp_lines[k])
                if t < best_s:
                    best, best_s = k, t
            if best < 0 or best_s > deadline[i] or best_s >= predicted[i]:
                continue  # no pool saves it (or HP is no faster): it stays
            lp.waiting.remove(req)
            lp.outstanding -= req.prompt + req.output
            self.hp[best].enqueue(req, through_frontend=False)
            hp_queued[best] += req.prefill_target
            self.offloads_waiting += 1
            self.moved.setdefault(req.id, (req.arrival_s, *self.slo_s(req)))
        return float(ahead[-1])

    # --- decoding requests: TPOT ------------------------------------------------------------------------
    def _migrate_decodes(self, lp: Instance, now: float, queued: float, line: tuple[int, float, float]) -> None:
        run = lp.running
        n = run.n
        budget, full_s, bare_s = line
        backlog_steps = -(-queued // budget)  # prefill-heavy iterations ahead
        tps = lp.tokens_per_step
        remaining_steps = np.ceil((run.output[:n] - run.generated(lp.decode_steps, tps)) / tps)
        heavy = np.minimum(remaining_steps, backlog_steps)
        finish = now + heavy * full_s + (remaining_steps - heavy) * bare_s
        reqs = run.reqs
        if self.class_slo_s:
            tbt = np.fromiter((self.slo_s(r)[1] for r in reqs), dtype=np.float64, count=n)
        else:
            tbt = self.default_slo_s[1]
        # the TPOT SLO as a deadline for the last token: first token + (output - 1) x TBT SLO; the first token
        # came after the arrival, which bounds the deadline from below without visiting the requests
        span = (run.output[:n] - 1) * tbt
        maybe = np.flatnonzero(run.arrival[:n] + span - finish < self.margin_s)
        if not len(maybe):
            return
        deadline = np.full(n, math.inf)
        deadline[maybe] = np.fromiter((reqs[k].first_token_s for k in maybe), dtype=np.float64,
                                      count=len(maybe)) + span[maybe]
        late = np.flatnonzero(deadline - finish < self.margin_s)
        # (slots shift as requests leave: take the requests and their figures first)
        hp_state = [(h, self.queued_tokens(h)) for h in self.hp] if len(late) else []
        for req, due, lp_finish in [(reqs[k], deadline[k], finish[k]) for k in late]:
            if req.output - req.generated > 1:
                self._migrate(lp, req, now, float(due), float(lp_finish), hp_state)

    def _migrate(self, lp: Instance, req: SimRequest, now: float, deadline: float, lp_finish: float,
                 hp_state: list[tuple[Instance, int]]) -> None:
        """Move a decoding request to the HP instance predicted to finish it first, by KV transfer or by
        recompute (as configured, or whichever is predicted faster), if that meets its deadline sooner."""
        # its tokens so far (req.generated counts only those before it joined LP's decoding set)
        generated = min(req.generated + int(lp.tokens_per_step * (lp.decode_steps - req.join_step)), req.output - 1)
        context = req.prompt + generated  # cached tokens it would carry
        nbytes = self.cluster.kv_transfer_bytes(context, lp)
        link = self.links[lp.name]
        transfer_s = link.latency_s + nbytes * (len(link.active) + 1) / link.bandwidth
        mode = self.config.migration
        best = None
        for h, queued in hp_state:
            blocks = h.kv.blocks_for(h._kv_tokens(context + 1))
            step_s = self.iteration_s(h, min(h.engine.token_budget, queued))
            left = req.output - generated
            options = []
            if mode != "recompute" and h.running.n + len(h.ready) + h.incoming < h.max_seqs \
                    and h.can_reserve(blocks):
                options.append((transfer_s, "transfer", blocks))
            if mode != "transfer":
                line = self.prefill_line(h)
                options.append((float(self.prefill_s(queued + context, line)), "recompute", 0))
            for move_s, how, nblocks in options:
                finish = now + move_s + left * step_s
                if best is None or finish < best[0]:
                    best = (finish, h, how, nblocks, move_s)
        if best is None or best[0] > deadline or best[0] >= lp_finish:
            return
        _, hp, how, blocks, move_s = best
        held = lp._leave(req, lp.decode_steps)  # its decode segment so far is recorded; it leaves the set
        req.epoch += 1  # LP's finish-heap entry is stale now
        context = req.prompt + req.generated  # exact now
        if how == "transfer":
            blocks = hp.kv.blocks_for(hp._kv_tokens(context + 1))
            if not hp.can_reserve(blocks):
                how = "recompute"  # (the estimate above fell short by a block; recompute needs no reservation)
        lp.outstanding -= req.prompt + req.output
        hp.outstanding += req.prompt + req.output
        self.migration_s += move_s
        # its first token came on LP: HP answers for its TBT only (a TTFT it missed is LP's)
        self.moved.setdefault(req.id, (req.arrival_s, math.inf, self.slo_s(req)[1]))
        if how == "transfer":
            self.migrations_transfer += 1
            hp.kv.allocate(blocks)
            req.kv_blocks = blocks
            req.src_blocks = held
            hp.incoming += 1
            self.links[lp.name].send(req.id, self.cluster.kv_transfer_bytes(context, lp),
                                     lambda r=req, s=lp, d=hp: self._arrived(r, s, d))
            return
        self.migrations_recompute += 1
        lp.kv.free_blocks(held)
        req.kv_blocks = 0
        hp.waiting.appendleft(req)  # re-prefills its prompt and generated tokens first
        hp.poke()

    def _arrived(self, req: SimRequest, lp: Instance, hp: Instance) -> None:
        hp.incoming -= 1
        lp.kv.free_blocks(req.src_blocks)
        req.src_blocks = 0
        lp.poke()
        if req.cancelled:  # live twin: the client left during the transfer
            hp.kv.free_blocks(req.kv_blocks)
            req.kv_blocks = 0
            hp.outstanding -= req.prompt + req.output
            hp.poke()
            return
        hp.join_ready(req)

    # --- figures --------------------------------------------------------------------------------------------
    def finalize(self) -> None:
        """Offload counts and fraction, HP-pool SLO violations (TTFT misses of the requests whose first token HP
        produced, TBT misses of every request it finished), per-pool utilization -> SimResult.policy."""
        cl = self.cluster
        n = len(cl.finish_s)
        hp_index = np.array([h.index for h in self.hp])
        on_hp = np.isin(cl.instance_of, hp_index)
        ttft_miss = tbt_miss = 0
        for rid in np.flatnonzero(on_hp):
            arrival_s, ttft_s, tbt_s = self.moved.get(int(rid), (math.nan, math.inf, math.inf))
            ttft_miss += bool(cl.first_token_s[rid] - arrival_s > ttft_s)
            tbt_miss += bool(cl.tpot_s[rid] > tbt_s)
        span_s = self.loop.now

        def busy(pool: list[Instance]) -> float:
            return float(np.mean([i.stats.busy_s for i in pool]) / span_s) if span_s > 0 else math.nan

        served = int(on_hp.sum())
        cl.policy_stats["priority_pools"] = {
            "lp_instances": [i.index for i in self.lp], "hp_instances": [int(i) for i in hp_index],
            "offloaded_requests": len(self.moved), "offload_fraction": len(self.moved) / n if n else 0.0,
            "offloads_waiting": self.offloads_waiting, "migrations_transfer": self.migrations_transfer,
            "migrations_recompute": self.migrations_recompute, "migration_predicted_s": self.migration_s,
            "hp_requests": served, "hp_ttft_violations": ttft_miss, "hp_tbt_violations": tbt_miss,
            "hp_tbt_violation_fraction": tbt_miss / served if served else 0.0,
            "lp_busy_fraction": busy(self.lp), "hp_busy_fraction": busy(self.hp), "checks": self.checks,
        }
