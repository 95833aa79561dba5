"""Fleet-level checks no agent can make alone: drift from the fleet majority, missing GPUs,
and heartbeat staleness. All pure.

Nodes are compared only with nodes of the same SKU. The "majority" of a value is its mode:
the value held by more nodes of that SKU than any other. When two or more values tie for the
most nodes there is no majority; the tie is reported as one fleet-level finding (node None)
naming every tied value, and only nodes holding none of the tied values are flagged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from controller.fleet.model import FleetFinding, NodeInventory, Severity


def _by_sku(nodes: Iterable[NodeInventory]) -> dict[str, list[NodeInventory]]:
    groups: dict[str, list[NodeInventory]] = defaultdict(list)
    for node in nodes:
        groups[node.sku].append(node)
    return dict(sorted(groups.items()))


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """Values by descending count, then by value, so results do not depend on input order."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _top(counts: Counter[str]) -> list[str]:
    """The values tied for the most nodes (one value when there is a majority)."""
    ranked = _ranked(counts)
    return [value for value, n in ranked if n == ranked[0][1]]


def _spread(counts: Counter[str]) -> str:
    return ", ".join(f"{value} on {n}" for value, n in _ranked(counts))


def _component_drift(
    sku: str, component: str, nodes: Sequence[NodeInventory]
) -> list[FleetFinding]:
    values = {n.name: n.components.get(component, "") for n in nodes}
    counts = Counter(v for v in values.values() if v)
    if len(counts) <= 1:
        return []
    top = _top(counts)
    total = sum(counts.values())
    check = f"{component}_drift"
    findings: list[FleetFinding] = []
    if len(top) == 1:
        expected = top[0]
        basis = f"the {sku} majority {expected} ({counts[expected]} of {total} nodes)"
    else:
        expected = " or ".join(top)
        basis = f"every tied {sku} value ({expected})"
        message = f"no majority {component} among {total} {sku} nodes: {_spread(counts)}"
        findings.append(
            FleetFinding(None, check, Severity.WARN, message, sku, component, "", expected)
        )
    for name, value in sorted(values.items()):
        if value and value not in top:
            message = f"{component} {value} differs from {basis}"
            findings.append(
                FleetFinding(name, check, Severity.WARN, message, sku, component, value, expected)
            )
    return findings


def drift(nodes: Iterable[NodeInventory]) -> list[FleetFinding]:
    """Nodes whose driver/firmware/VBIOS version differs from their SKU's majority."""
    findings: list[FleetFinding] = []
    for sku, group in _by_sku(nodes).items():
        components = sorted({c for n in group for c in n.components})
        for component in components:
            findings.extend(_component_drift(sku, component, group))
    return findings


def gpu_count(nodes: Iterable[NodeInventory]) -> list[FleetFinding]:
    """Nodes reporting fewer GPUs than their SKU's majority (critical: a GPU is missing),
    or more (warn: probably a mislabeled SKU). On a tie the highest tied count is expected,
    because losing GPUs is the failure mode and gaining them is not."""
    findings: list[FleetFinding] = []
    for sku, group in _by_sku(nodes).items():
        counts = Counter(str(n.gpu_count) for n in group)
        if len(counts) <= 1:
            continue
        top = _top(counts)
        expected = max(int(v) for v in top)
        if len(top) == 1:
            basis = (
                f"the {sku} majority is {expected} ({counts[str(expected)]} of {len(group)} nodes)"
            )
        else:
            spread = _spread(counts)
            basis = f"no {sku} majority ({spread}), expecting the highest tied count {expected}"
        for node in sorted(group, key=lambda n: n.name):
            if node.gpu_count == expected:
                continue
            fewer = node.gpu_count < expected
            findings.append(
                FleetFinding(
                    node=node.name,
                    check="gpu_count",
                    severity=Severity.CRITICAL if fewer else Severity.WARN,
                    message=f"reports {node.gpu_count} GPUs; {basis}",
                    sku=sku,
                    component="gpus",
                    value=str(node.gpu_count),
                    expected=str(expected),
                    action="reboot_node" if fewer else "none",
                )
            )
    return findings


def check_fleet(nodes: Iterable[NodeInventory]) -> list[FleetFinding]:
    """Every fleet-level check over the same inventory."""
    inventory = list(nodes)
    return gpu_count(inventory) + drift(inventory)


def stale_nodes(last_seen: Mapping[str, float], now: float, timeout: float) -> list[str]:
    """Names of nodes not heard from for more than `timeout` seconds, sorted."""
    if not timeout > 0:
        raise ValueError(f"heartbeat timeout must be > 0 seconds (got {timeout})")
    return sorted(name for name, seen in last_seen.items() if now - seen > timeout)
