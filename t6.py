from phasewise.plan.goodput import workload_spec
import inspect
print(inspect.signature(workload_spec))
