"""PromQL fragments the dashboards share: host filters that accept both dcgm-exporter
spellings of the host label, and the join that gives gpufleet's per-node series a hostname.

gpufleet's own agent series carry no host label: each agent is its own scrape target, so
`instance` identifies the node and `gpufleet_agent_info{hostname}` names it. Joining on
`instance` attaches `hostname` to any agent series (the kube-state-metrics info pattern).
"""

from __future__ import annotations

NODE_VAR = "$node"
GPU_VAR = "$gpu"
RATE = "$__rate_interval"


def dcgm(metric: str, extra: str = "", node: str = NODE_VAR) -> str:
    """`metric` on the selected node(s), matching either `hostname` or `Hostname`.

    gpufleet's agent sets both labels (the two selectors then return the same series, which
    `or` keeps once); dcgm-exporter up to 4.5.3-4.8.2 sets only `Hostname`, later ones only
    `hostname`.
    """
    more = f", {extra}" if extra else ""
    return f'({metric}{{hostname=~"{node}"{more}}} or {metric}{{Hostname=~"{node}"{more}}})'


def dcgm_rate(metric: str, extra: str = "", node: str = NODE_VAR) -> str:
    """Per-second rate of a dcgm-exporter counter on the selected node(s), either spelling."""
    more = f", {extra}" if extra else ""
    return (
        f'(rate({metric}{{hostname=~"{node}"{more}}}[{RATE}])'
        f' or rate({metric}{{Hostname=~"{node}"{more}}}[{RATE}]))'
    )


def on_node(expr: str, node: str | None = NODE_VAR) -> str:
    """`expr` with the agent's `hostname` attached, restricted to `node` (None: every node)."""
    info = "gpufleet_agent_info" if node is None else f'gpufleet_agent_info{{hostname=~"{node}"}}'
    return f"({expr}) * on(instance) group_left(hostname) {info}"
