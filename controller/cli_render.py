"""Pure rendering for the operator CLI: wire messages -> JSON-able dicts and rich tables.

Nothing here talks to the network or reads the clock; `now` is passed in where ages are shown.
The JSON shapes are the contract in the design ("more keys are welcome"):

- nodes: `[{"name", "state", "verdict", "sku", "gpus", "nvlink_domain", ...}]`
- preflight: `{"admitted": [node, ...], "rejected": [{"node", "reasons": [{"check",
  "severity", "gpu", "message", "evidence_age_s"}, ...]}]}`

The code lives by subject: `cli_format` (enum spellings, ages, colours), `cli_render_nodes`
(nodes, one node, events) and `cli_render_preflight` (the gate's result and progress); this
module gathers them under one name.
"""

from __future__ import annotations

from controller.cli_format import (  # `X as X`: re-exported
    JsonDict as JsonDict,
    action_name as action_name,
    format_age as format_age,
    severity_name as severity_name,
)
from controller.cli_render_nodes import (
    burnin_json as burnin_json,
    burnin_line as burnin_line,
    event_json as event_json,
    events_table as events_table,
    finding_json as finding_json,
    node_detail_json as node_detail_json,
    node_detail_view as node_detail_view,
    node_json as node_json,
    nodes_json as nodes_json,
    nodes_table as nodes_table,
    transition_json as transition_json,
)
from controller.cli_render_preflight import (
    PreflightProgressView as PreflightProgressView,
    preflight_json as preflight_json,
    preflight_table as preflight_table,
    reason_json as reason_json,
)
