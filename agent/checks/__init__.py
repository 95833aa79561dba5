"""Pure health checks: (sample, previous sample, policy) -> findings.

One module per concern (memory, xid, thermal, pcie, nvlink, fabric, inventory, reachability,
host); `readings` holds the one rule for missing readings; `evaluate` runs them all.
"""

from agent.checks.evaluate import ALL_CHECKS, evaluate

__all__ = ["ALL_CHECKS", "evaluate"]
