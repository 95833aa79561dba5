"""The metric contract matches what the components emit.

- agent: every contract entry is a family of `agent.exporter.names.ALL_SPECS` with the same
  type and labels, and every family the agent can emit is in the contract;
- controller process (controller, supervisor, burn-in): every entry marked emitted is
  registered by `controller.metrics.ControllerMetrics` with the same type and labels, and an
  entry still marked proposed is not (flip it to emitted when implementing it).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from agent.exporter.families import Kind
from agent.exporter.names import ALL_SPECS, METRIC_NAMES
from dashboards.metrics_contract import (
    BY_SERIES,
    CONTRACT,
    Component,
    MetricDef,
    MetricType,
    Status,
    lookup,
)

AGENT_TYPES = {Kind.GAUGE: MetricType.GAUGE, Kind.COUNTER: MetricType.COUNTER,
               Kind.UNTYPED: MetricType.UNTYPED}  # fmt: skip
CONTROLLER_SIDE = (Component.CONTROLLER, Component.SUPERVISOR, Component.BURNIN)


def agent_defs() -> list[MetricDef]:
    return [m for m in CONTRACT if m.component is Component.AGENT]


def controller_side(status: Status) -> list[MetricDef]:
    return [m for m in CONTRACT if m.component in CONTROLLER_SIDE and m.status is status]


def test_every_agent_entry_is_an_agent_family_with_its_type_and_labels() -> None:
    specs = {s.name: s for s in ALL_SPECS}
    problems = []
    for m in agent_defs():
        spec = specs.get(m.name)
        if m.name not in METRIC_NAMES or spec is None:
            problems.append(f"{m.name}: not in agent.exporter.names.METRIC_NAMES")
            continue
        if AGENT_TYPES[spec.kind] is not m.type:
            problems.append(f"{m.name}: agent type {spec.kind}, contract {m.type}")
        if set(spec.labels) != set(m.labels):
            problems.append(f"{m.name}: agent labels {spec.labels}, contract {m.labels}")

    assert not problems, "\n".join(problems)
    assert all(m.status is Status.EMITTED for m in agent_defs())


def test_every_agent_family_is_in_the_contract() -> None:
    missing = sorted(set(METRIC_NAMES) - {m.name for m in agent_defs()})

    assert not missing, (
        f"the agent emits families the contract lacks: {missing}; "
        "add them to dashboards/metrics_contract.py and run python -m dashboards.build"
    )


def controller_families() -> dict[str, tuple[MetricType, tuple[str, ...]]]:
    """Name as PromQL uses it -> (type, labels), from a fresh ControllerMetrics."""
    from prometheus_client.metrics import MetricWrapperBase

    from controller.metrics import ControllerMetrics

    metrics = ControllerMetrics()
    out: dict[str, tuple[MetricType, tuple[str, ...]]] = {}
    wrappers: dict[str, Any] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            wrappers[value._name] = value
    metrics.bind_node_states(lambda: {"ready": 1})
    for family in metrics.registry.collect():
        mtype = MetricType(family.type)
        name = family.name + "_total" if mtype is MetricType.COUNTER else family.name
        wrapper = wrappers.get(family.name)
        if wrapper is not None:
            labels = tuple(wrapper._labelnames)  # prometheus_client keeps them here
        else:  # a custom collector: read the labels off its samples
            labels = tuple(k for s in family.samples for k in s.labels)
        out[name] = (mtype, tuple(dict.fromkeys(labels)))
    return out


def need_controller_metrics() -> None:
    if importlib.util.find_spec("controller.metrics") is None:
        pytest.skip("controller/metrics.py does not exist yet: controller-side names unchecked")


def test_every_emitted_controller_side_entry_is_registered_with_its_type_and_labels() -> None:
    need_controller_metrics()
    emitted = controller_families()
    problems = []
    for m in controller_side(Status.EMITTED):
        if m.name not in emitted:
            problems.append(f"{m.name}: not registered by controller.metrics.ControllerMetrics")
            continue
        mtype, labels = emitted[m.name]
        if mtype is not m.type:
            problems.append(f"{m.name}: controller type {mtype}, contract {m.type}")
        if set(labels) != set(m.labels):
            problems.append(f"{m.name}: controller labels {labels}, contract {m.labels}")

    assert not problems, "\n".join(problems)
    assert {"gpufleet_nodes", "gpufleet_ingest_latency_seconds"} <= set(emitted)


def test_no_proposed_entry_is_emitted_yet() -> None:
    need_controller_metrics()
    emitted = controller_families()
    implemented = [m.name for m in controller_side(Status.PROPOSED) if m.name in emitted]

    assert not implemented, (
        f"now emitted, still marked proposed: {implemented}; set status=EMITTED in "
        "dashboards/metrics_contract.py and run python -m dashboards.build"
    )


def test_series_names_resolve_to_their_family() -> None:
    hist = lookup("gpufleet_ingest_latency_seconds_bucket")

    assert hist is not None and hist.name == "gpufleet_ingest_latency_seconds"
    assert hist.series_labels("gpufleet_ingest_latency_seconds_bucket") == ("le",)
    assert lookup("gpufleet_xid_events_total") is BY_SERIES["gpufleet_xid_events_total"]
    assert lookup("gpufleet_xid_events") is None
    with pytest.raises(ValueError, match="_total"):
        MetricDef("x_total", MetricType.GAUGE, (), "", Component.AGENT)
