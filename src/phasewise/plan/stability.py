"""Whether a deployment keeps up with its load: the requests waiting for a seat over a search probe's arrival window
stayed steady, grew and drained, or grow (queue_verdict); the goodput search's test beside the SLO attainment
(goodput.evaluate), and verification's (verification.verify)."""

from __future__ import annotations

import numpy as np

from phasewise.sim import SimResult

WAITING_MARGIN_PER_INSTANCE = 2  # waiting requests per instance a stable queue may add over the window (noise)
# the last fifth's queue samples (every 0.01 of the window) that fall in its final twentieth, where a queue that grew
# must be back at the middle's level (after its highest sample) for the growth to be an excursion that drained
DRAINED_SAMPLES = 6
STEADY, DRAINED, GROWS = "steady", "drained", "grows"  # queue_verdict's answers


def stable(res: SimResult) -> bool:
    """Whether the deployment keeps up: its queue did not grow, or grew and drained (queue_verdict)."""
    return queue_verdict(res) != GROWS


def queue_verdict(res: SimResult) -> str:
    """Whether the requests waiting for a seat (arrived, not yet scheduled) over the last fifth of the arrival window
    are not clearly more than over its middle (STEADY), are but that excursion drained by the window's end
    (DRAINED), or grew (GROWS). The queue beyond the seats, not the requests in the system: while the running batch
    fills its seats the in-system count rises whatever the load, and once they are full an overload shows only as
    arrivals that wait (a growing backlog is overload, whatever a finite window's attainment says). At exactly the
    capacity the queue wanders like a random walk; the margin (WAITING_MARGIN_PER_INSTANCE per instance that seats
    requests, and half the middle's) only flags clear growth.
    An overload's backlog grows by (arrival rate - service rate) x time and does not fall back; a stationary queue's
    excursion, however high, drains: 20,000-token prompts prefilled one at a time on one H100 at 80 % of its capacity
    queue up 12 in a burst and are back to 1 eight seconds later (2,000 s of that load keep the queue under 6),
    which the means alone took for a backlog on a seed at each of verification's steps: the plan found none. So a
    last fifth that grew has DRAINED where, in the window's final twentieth and after the fifth's highest sample,
    the queue is back at the middle's mean (plus the margin). Not anywhere in the fifth: a backlog starts once the
    seats fill, which may follow a burst that drained (a 20 s window of one Llama-3.1-8B b1024 unit at 23 req/s,
    whose queue grows 3 requests/s over 300 s); nor a burst still under way at the end. Windows of a queue above its
    capacity GROW as the means alone found them to (tests/test_plan_stable_draining_queue.py). A queue that drained
    is also what a rate at the capacity shows, a random walk that drained this once: the search runs such a probe
    again over a longer window (evaluate). A request never scheduled (refused) never waits."""
    arrival, scheduled = res.arrival_s, res.scheduled_s
    end = float(arrival.max())
    if end <= 0:
        return STEADY
    admitted = np.isfinite(scheduled)
    arrived = np.sort(arrival[admitted])
    seated = np.sort(scheduled[admitted])

    def waiting(ts: np.ndarray) -> np.ndarray:
        return np.searchsorted(arrived, ts, side="right") - np.searchsorted(seated, ts, side="right")

    middle = float(np.mean(waiting(np.linspace(0.3, 0.5, 21) * end)))
    last = waiting(np.linspace(0.8, 1.0, 21) * end)
    # the queue forms where requests are first seated: collocated and prefill instances (and encoders before
    # them), never on decode ones (scheduled_s is their prefill's), so idle decode instances widen no margin
    queues = sum(stats.role != "decode" for stats in res.instances)
    margin = WAITING_MARGIN_PER_INSTANCE * max(queues, 1)
    if float(np.mean(last)) <= 1.5 * middle + margin:
        return STEADY
    after_peak = last[max(int(np.argmax(last)), len(last) - DRAINED_SAMPLES):]
    return DRAINED if after_peak.min() <= middle + margin else GROWS
