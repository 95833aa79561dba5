"""Operator policy: what a healthy node of each SKU looks like, and the thresholds that judge it.

`load_policy(path, sku)` starts from the shipped `default.toml`, overlays the operator's TOML,
validates every key and raises `PolicyError` listing every problem at once. The result is an
immutable `Policy`; `policy.limits_for(sample)` picks the SKU limits from the GPU names.
"""

from agent.policy.limits import (
    CLOCK_EVENT_REASONS,
    DEFAULT_SKU,
    HostLimits,
    NodeLimits,
    Policy,
    RailLimits,
    SkuLimits,
    XidOverride,
)
from agent.policy.loader import (
    PolicyError,
    build_policy,
    default_policy,
    load_policy,
    merge,
    policy_from_dict,
)
from agent.policy.sku import sku_of

__all__ = [
    "CLOCK_EVENT_REASONS",
    "DEFAULT_SKU",
    "HostLimits",
    "NodeLimits",
    "Policy",
    "PolicyError",
    "RailLimits",
    "SkuLimits",
    "XidOverride",
    "build_policy",
    "default_policy",
    "load_policy",
    "merge",
    "policy_from_dict",
    "sku_of",
]
