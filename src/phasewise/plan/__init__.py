"""Planning: enumerate serving strategies, search each one's goodput under SLOs, rank them."""

from phasewise.plan.backends import run_all
from phasewise.plan.goodput import GoodputResult, WorkloadSpec, evaluate
from phasewise.plan.planner import PlanResult, plan
from phasewise.plan.strategies import PlanOptions, Strategy, enumerate_strategies

__all__ = ["GoodputResult", "PlanOptions", "PlanResult", "Strategy", "WorkloadSpec", "enumerate_strategies",
           "evaluate", "plan", "run_all"]
