"""Host health: memory, disks, load, required services, InfiniBand/RoCE ports and GPU rails.

Host fields follow the central rule too: an ERROR entry in `host.unavailable` (keyed by the
HostSample field name) is one UNKNOWN per check; `host.unavailable["host"]` (the whole host read
failed) is reported once, by `check_host_read`. Without a host sample nothing is judged.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.checks.readings import delta, elapsed_between, finding, unreadable
from agent.model import Action, Finding, HostSample, IbPort, NodeSample, Severity
from agent.policy import Policy

HostJudge = Callable[[HostSample, HostSample | None, NodeSample, Policy], list[Finding]]


def _run(
    check: str,
    fields: tuple[str, ...],
    judge: HostJudge,
    sample: NodeSample,
    previous: NodeSample | None,
    policy: Policy,
) -> list[Finding]:
    host = sample.host
    if host is None:
        return []
    usable = previous is not None and elapsed_between(sample, previous) is not None
    prev_host = previous.host if previous is not None and usable else None
    return unreadable(check, fields, host.unavailable, None) + judge(
        host, prev_host, sample, policy
    )


def check_host_read(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """The host reader itself failed."""
    return _run("host", ("host",), lambda *_: [], sample, previous, policy)


def check_host_memory(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Available RAM below the policy's fraction of total: WARN."""
    fields = ("mem_total_bytes", "mem_available_bytes")
    return _run("host_memory", fields, _judge_memory, sample, previous, policy)


def _judge_memory(
    host: HostSample, _: HostSample | None, __: NodeSample, p: Policy
) -> list[Finding]:
    total, available = host.mem_total_bytes, host.mem_available_bytes
    if not total or available is None:
        return []
    fraction, limit = available / total, p.host.min_mem_available_fraction
    if fraction >= limit:
        return []
    return [finding(
        "host_memory_low", Severity.WARN,
        f"Only {fraction:.1%} of host memory is available ({available / 2**30:.1f} GiB); the "
        f"policy wants {limit:.0%}. Look for leaked processes or oversized jobs.",
        mem_available_bytes=available, mem_total_bytes=total, threshold=limit,
    )]  # fmt: skip


def check_disks(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """Used fraction of each reported mount: WARN, then CRITICAL (drain) when nearly full."""
    return _run("disk", ("disks",), _judge_disks, sample, previous, policy)


def _judge_disks(
    host: HostSample, _: HostSample | None, __: NodeSample, p: Policy
) -> list[Finding]:
    out: list[Finding] = []
    for mount, used in sorted(host.disks.items()):
        critical = used >= p.host.disk_critical_fraction
        if not critical and used < p.host.disk_warn_fraction:
            continue
        limit = p.host.disk_critical_fraction if critical else p.host.disk_warn_fraction
        out.append(finding(
            "disk_full", Severity.CRITICAL if critical else Severity.WARN,
            f"Mount {mount} is {used:.0%} full (limit {limit:.0%}). Free space: checkpoints, logs "
            "and caches fail to write on a full disk.",
            action=Action.DRAIN if critical else Action.NONE,
            mount=mount, used_fraction=round(used, 4), threshold=limit,
        ))  # fmt: skip
    return out


def check_load(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """One-minute load per CPU above the policy's limit: WARN."""
    return _run("load", ("load1", "cpu_count"), _judge_load, sample, previous, policy)


def _judge_load(host: HostSample, _: HostSample | None, __: NodeSample, p: Policy) -> list[Finding]:
    if host.load1 is None or not host.cpu_count:
        return []
    per_cpu, limit = host.load1 / host.cpu_count, p.host.max_load_per_cpu
    if per_cpu <= limit:
        return []
    return [finding(
        "load_high", Severity.WARN,
        f"Load {host.load1:g} on {host.cpu_count} CPUs ({per_cpu:.1f} per CPU, limit {limit:g}). "
        "Data loaders and NCCL proxy threads will starve; find the runaway processes.",
        load1=host.load1, cpu_count=host.cpu_count, threshold=limit,
    )]  # fmt: skip


def check_services(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Required services must run; a reported service that is down is CRITICAL (drain)."""
    return _run("services", ("services",), _judge_services, sample, previous, policy)


def _judge_services(
    host: HostSample, _: HostSample | None, sample: NodeSample, p: Policy
) -> list[Finding]:
    required = dict.fromkeys((*p.host.required_services, *p.limits_for(sample).required_services))
    out: list[Finding] = []
    for name in sorted({*required, *host.services}):
        running = host.services.get(name)
        if running is None and "services" not in host.unavailable:
            out.append(finding(
                "service_unknown", Severity.UNKNOWN,
                f"Required service {name} was not reported by the host reader; it could not be "
                "verified.", service=name,
            ))  # fmt: skip
        elif running is False:
            out.append(finding(
                "service_down", Severity.CRITICAL,
                f"Service {name} is not running. Start it (systemctl start {name}) and check its "
                "logs before scheduling work.",
                action=Action.DRAIN, service=name, required=name in required,
            ))  # fmt: skip
    return out


def check_ib_ports(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Each watched port ACTIVE/LinkUp at the SKU's rate, and enough of them."""
    return _run("ib_ports", ("ib_ports",), _judge_ports, sample, previous, policy)


def _judge_ports(
    host: HostSample, _: HostSample | None, sample: NodeSample, p: Policy
) -> list[Finding]:
    rate = p.limits_for(sample).expected_ib_rate_gbps
    ports = [port for port in host.ib_ports if p.rails.watches(port.device)]
    out: list[Finding] = []
    if "ib_ports" not in host.unavailable and len(ports) < p.rails.expected_ib_ports:
        out.append(finding(
            "ib_port_count", Severity.CRITICAL,
            f"{len(ports)} InfiniBand/RoCE port(s) found, the policy expects "
            f"{p.rails.expected_ib_ports}. Check the HCAs (ibstat, lspci) and drivers.",
            action=Action.DRAIN, ports_seen=len(ports), ports_expected=p.rails.expected_ib_ports,
        ))  # fmt: skip
    for port in ports:
        name = f"{port.device}/{port.port}"
        if not port.state or not port.phys_state:
            continue  # unreadable: reported once as UNKNOWN from host.unavailable["ib_ports"]
        if port.state.upper() != "ACTIVE" or port.phys_state.lower() != "linkup":
            out.append(finding(
                "ib_port_down", Severity.CRITICAL,
                f"Port {name} is {port.state}/{port.phys_state}, not ACTIVE/LinkUp. Drain the "
                "node and check the cable, transceiver and switch port.",
                action=Action.DRAIN, port=name, state=port.state, phys_state=port.phys_state,
            ))  # fmt: skip
        elif rate and port.rate_gbps is not None and port.rate_gbps < rate:
            out.append(finding(
                "ib_rate_low", Severity.WARN,
                f"Port {name} runs at {port.rate_gbps:g} Gb/s, below the {rate:g} Gb/s this SKU "
                "needs. Check the cable and the switch port speed.",
                port=name, rate_gbps=port.rate_gbps, threshold=rate,
            ))  # fmt: skip
    return out


def check_ib_counters(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Growth of link_downed (flaps) and symbol_error between samples: WARN."""
    return _run("ib_counters", ("ib_ports",), _judge_counters, sample, previous, policy)


def _judge_counters(
    host: HostSample, prev: HostSample | None, _: NodeSample, p: Policy
) -> list[Finding]:
    if prev is None:
        return []
    before: dict[tuple[str, int], IbPort] = {(q.device, q.port): q for q in prev.ib_ports}
    out: list[Finding] = []
    for port in host.ib_ports:
        old = before.get((port.device, port.port))
        if old is None or not p.rails.watches(port.device):
            continue
        name = f"{port.device}/{port.port}"
        for counter, check, limit, what in (
            ("link_downed", "ib_link_downed", p.rails.link_downed_max_delta, "went down"),
            ("symbol_error", "ib_symbol_errors", p.rails.symbol_error_max_delta, "symbol errors"),
        ):
            grown = delta(port.counters.get(counter), old.counters.get(counter))
            if grown is not None and grown > limit:
                out.append(finding(
                    check, Severity.WARN,
                    f"Port {name}: {what} ({counter} +{grown}) since the last sample. Check the "
                    "cable and transceiver; a flapping link stalls collectives.",
                    port=name, counter=counter, delta=grown, threshold=limit,
                ))  # fmt: skip
    return out


def check_rails(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """When rails are expected, every reachable GPU must map to a NIC rail."""
    if not policy.rails.expected:
        return []
    return _run("rails", ("rails",), _judge_rails, sample, previous, policy)


def _judge_rails(
    host: HostSample, _: HostSample | None, sample: NodeSample, p: Policy
) -> list[Finding]:
    if "rails" in host.unavailable:
        return []
    return [
        finding(
            "rail_missing", Severity.WARN,
            f"GPU {gpu.index} has no InfiniBand rail (no NIC on its PCIe switch/NUMA node). "
            "Rail-aligned placement cannot use it; check the HCA and topology.",
            gpu=gpu.index, pci_bus_id=gpu.pci_bus_id,
        )
        for gpu in sample.gpus
        if not gpu.lost and gpu.index not in host.rails
    ]  # fmt: skip
