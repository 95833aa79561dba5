"""Capture the raw answers a real GPU's NVML gives to the calls `NvmlBackend` makes, as JSON.

On a machine with NVIDIA GPUs, from the repository root (only pynvml and the standard library
are needed; UUIDs and serials are replaced by stable stand-ins unless --keep-ids):

    python -m tests.fakes.capture_nvml --out tests/data/nvml/<sku>_<what>.json

`fake_from_capture` (and `fake_pynvml.load_captured`) replays a capture through a `FakeNvml`,
so the backend's tests can run on what real hardware said. The format, per GPU, is the list of
raw calls: {"fn": pynvml function, "args": [...], "value": JSON value} or {..., "error": code},
plus the field values: {"id", "scope", "ret", "type", "value"} (fields that answered
NOT_SUPPORTED are left out: replay answers NOT_SUPPORTED for any field it was not given). Structs
are dicts of their fields. Bump FORMAT when that changes.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import sys
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from agent.model import NVLINK5_COUNTERS as AGENT_NVLINK5_COUNTERS  # stdlib-only module

if TYPE_CHECKING:
    from tests.fakes.fake_pynvml import FakeNvml

FORMAT = "gpufleet-nvml-capture/1"
NVLINK5_COUNTERS = tuple(key.upper() for key in AGENT_NVLINK5_COUNTERS)


def device_calls(n: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The (function, constant args) pairs asked of every GPU, besides NVLink and fields."""
    return [
        ("nvmlDeviceGetName", ()), ("nvmlDeviceGetUUID", ()), ("nvmlDeviceGetSerial", ()),
        ("nvmlDeviceGetBoardPartNumber", ()), ("nvmlDeviceGetPciInfo_v3", ()),
        ("nvmlDeviceGetMinorNumber", ()), ("nvmlDeviceGetVbiosVersion", ()),
        ("nvmlDeviceGetInforomImageVersion", ()),
        *[("nvmlDeviceGetInforomVersion", (o,))
          for o in (n.NVML_INFOROM_OEM, n.NVML_INFOROM_ECC, n.NVML_INFOROM_POWER)],
        ("nvmlDeviceGetPersistenceMode", ()),
        ("nvmlDeviceGetTemperatureV", (n.NVML_TEMPERATURE_GPU,)),
        ("nvmlDeviceGetTemperature", (n.NVML_TEMPERATURE_GPU,)),
        *[("nvmlDeviceGetTemperatureThreshold", (t,)) for t in (
            n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN, n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
            n.NVML_TEMPERATURE_THRESHOLD_MEM_MAX, n.NVML_TEMPERATURE_THRESHOLD_GPU_MAX)],
        ("nvmlDeviceGetPowerUsage", ()), ("nvmlDeviceGetEnforcedPowerLimit", ()),
        ("nvmlDeviceGetTotalEnergyConsumption", ()),
        ("nvmlDeviceGetClockInfo", (n.NVML_CLOCK_SM,)),
        ("nvmlDeviceGetClockInfo", (n.NVML_CLOCK_MEM,)),
        ("nvmlDeviceGetCurrentClocksEventReasons", ()),
        ("nvmlDeviceGetCurrentClocksThrottleReasons", ()),
        ("nvmlDeviceGetViolationStatus", (n.NVML_PERF_POLICY_POWER,)),
        ("nvmlDeviceGetViolationStatus", (n.NVML_PERF_POLICY_THERMAL,)),
        ("nvmlDeviceGetUtilizationRates", ()), ("nvmlDeviceGetMemoryInfo", ()),
        ("nvmlDeviceGetMemoryInfo_v2", ()),
        *[("nvmlDeviceGetTotalEccErrors", (e, c))
          for e in (n.NVML_MEMORY_ERROR_TYPE_CORRECTED, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)
          for c in (n.NVML_VOLATILE_ECC, n.NVML_AGGREGATE_ECC)],
        ("nvmlDeviceGetRetiredPages", (n.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,)),
        ("nvmlDeviceGetRetiredPages", (n.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,)),
        ("nvmlDeviceGetRetiredPagesPendingStatus", ()), ("nvmlDeviceGetRemappedRows", ()),
        ("nvmlDeviceGetUnrepairableMemoryFlag_v1", ()),
        ("nvmlDeviceGetCurrPcieLinkGeneration", ()), ("nvmlDeviceGetMaxPcieLinkGeneration", ()),
        ("nvmlDeviceGetCurrPcieLinkWidth", ()), ("nvmlDeviceGetMaxPcieLinkWidth", ()),
        ("nvmlDeviceGetPcieReplayCounter", ()), ("nvmlDeviceGetSupportedEventTypes", ()),
        ("nvmlDeviceGetGpuFabricInfoV", (2,)), ("nvmlDeviceGetGpuFabricInfoV", (3,)),
    ]


def jsonable(value: Any) -> Any:
    """pynvml results as JSON: structs and unions become dicts, arrays lists, bytes text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, ctypes.Structure | ctypes.Union):
        return {name: jsonable(getattr(value, name)) for name, *_ in value._fields_}
    if isinstance(value, ctypes.Array | list | tuple):
        return [jsonable(v) for v in value]
    return repr(value)


def _call(n: Any, h: Any, fn: str, args: tuple[int, ...]) -> Any:
    if fn == "nvmlDeviceGetMemoryInfo_v2":
        return n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2)
    if fn == "nvmlDeviceGetGpuFabricInfoV":
        info = n.c_nvmlGpuFabricInfo_v3_t() if args == (3,) else n.c_nvmlGpuFabricInfoV_t()
        n.nvmlDeviceGetGpuFabricInfoV(h, ctypes.byref(info))
        return info
    return getattr(n, fn)(h, *args)


def _record(n: Any, fn: str, args: tuple[int, ...], read: Callable[[], Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"fn": fn, "args": list(args)}
    try:
        entry["value"] = jsonable(read())
    except n.NVMLError as exc:
        entry["error"] = int(exc.value)
    return entry


def _member(ret: int, value_type: int) -> str:
    """The union member to record: the typed one on success, the raw 64 bits otherwise."""
    return _MEMBERS[value_type] if ret == 0 and 0 <= value_type < len(_MEMBERS) else "ullVal"


def capture_gpu(n: Any, index: int) -> dict[str, Any]:
    """Every call of one GPU, then NVLink state/counters per link, then the field values."""
    h = n.nvmlDeviceGetHandleByIndex(index)
    calls = [_record(n, fn, args, partial(_call, n, h, fn, args)) for fn, args in device_calls(n)]
    links = 0
    for link in range(int(n.NVML_NVLINK_MAX_LINKS)):
        entry = _record(n, "nvmlDeviceGetNvLinkState", (link,),
                        partial(n.nvmlDeviceGetNvLinkState, h, link))
        calls.append(entry)
        if "error" in entry:
            break
        links += 1
    for link in range(links):
        for counter in (n.NVML_NVLINK_ERROR_DL_REPLAY, n.NVML_NVLINK_ERROR_DL_RECOVERY,
                        n.NVML_NVLINK_ERROR_DL_CRC_FLIT, n.NVML_NVLINK_ERROR_DL_CRC_DATA):
            read = partial(n.nvmlDeviceGetNvLinkErrorCounter, h, link, counter)
            calls.append(_record(n, "nvmlDeviceGetNvLinkErrorCounter", (link, counter), read))
    ids: list[Any] = [n.NVML_FI_DEV_MEMORY_TEMP, n.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION]
    ids += [(getattr(n, f"NVML_FI_DEV_NVLINK_COUNT_{name}"), link)
            for name in NVLINK5_COUNTERS for link in range(links)]
    fields = [
        {"id": int(v.fieldId), "scope": int(v.scopeId), "ret": int(v.nvmlReturn),
         "type": int(v.valueType),
         "value": getattr(v.value, _member(int(v.nvmlReturn), int(v.valueType)))}
        for v in n.nvmlDeviceGetFieldValues(h, ids)
        if v.nvmlReturn != n.NVML_ERROR_NOT_SUPPORTED  # absent = NOT_SUPPORTED on replay
    ]
    return {"index": index, "calls": calls, "fields": fields}


def capture(n: Any) -> dict[str, Any]:
    """The whole node: system calls, then every GPU. `n` is pynvml (or a fake of it)."""
    n.nvmlInit()
    try:
        system = {
            fn: _record(n, fn, (), getattr(n, fn))
            for fn in ("nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion_v2",
                       "nvmlSystemGetNVMLVersion", "nvmlDeviceGetCount")
        }
        count = int(system["nvmlDeviceGetCount"].get("value", 0))
        return {"format": FORMAT, "system": system,
                "gpus": [capture_gpu(n, i) for i in range(count)]}
    finally:
        n.nvmlShutdown()


def anonymise(doc: dict[str, Any]) -> None:
    """Replace GPU UUIDs and serials with stable stand-ins derived from them (in place)."""
    for gpu in doc["gpus"]:
        for entry in gpu["calls"]:
            value = entry.get("value")
            if entry["fn"] == "nvmlDeviceGetUUID" and isinstance(value, str):
                entry["value"] = "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_OID, value))
            elif entry["fn"] == "nvmlDeviceGetSerial" and isinstance(value, str):
                digest = int(hashlib.sha256(value.encode()).hexdigest(), 16)
                entry["value"] = f"{digest % 10**13:013d}"


def dumps_capture(doc: dict[str, Any]) -> str:
    """JSON text with one call or field per line: small, and readable in a diff."""
    one = partial(json.dumps, separators=(", ", ": "))
    gpus = []
    for gpu in doc["gpus"]:
        calls = ",\n    ".join(one(c) for c in gpu["calls"])
        fields = ",\n    ".join(one(f) for f in gpu["fields"])
        gpus.append(f'{{"index": {gpu["index"]},\n   "calls": [\n    {calls}],\n'
                    f'   "fields": [\n    {fields}]}}')
    system = ",\n  ".join(f"{json.dumps(k)}: {one(v)}" for k, v in doc["system"].items())
    head = {k: v for k, v in doc.items() if k not in ("system", "gpus")}
    lines = [f"{json.dumps(k)}: {one(v)}" for k, v in head.items()]
    lines += [f'"system": {{\n  {system}}}', '"gpus": [\n  ' + ",\n  ".join(gpus) + "]"]
    return "{" + ",\n".join(lines) + "}\n"


def read_capture(path: str) -> dict[str, Any]:
    """Load and check a capture file."""
    with open(path, encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


_SCALARS = {
    "nvmlDeviceGetName": "name", "nvmlDeviceGetUUID": "uuid", "nvmlDeviceGetSerial": "serial",
    "nvmlDeviceGetBoardPartNumber": "board_part_number", "nvmlDeviceGetMinorNumber": "minor_number",
    "nvmlDeviceGetVbiosVersion": "vbios_version",
    "nvmlDeviceGetInforomImageVersion": "inforom_image_version",
    "nvmlDeviceGetPersistenceMode": "persistence_mode",
    "nvmlDeviceGetTemperatureV": "temperature_c", "nvmlDeviceGetTemperature": "temperature_c",
    "nvmlDeviceGetPowerUsage": "power_usage_mw",
    "nvmlDeviceGetEnforcedPowerLimit": "enforced_power_limit_mw",
    "nvmlDeviceGetTotalEnergyConsumption": "total_energy_mj",
    "nvmlDeviceGetCurrentClocksEventReasons": "clocks_event_reasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons": "clocks_event_reasons",
    "nvmlDeviceGetRetiredPagesPendingStatus": "retired_pages_pending",
    "nvmlDeviceGetUnrepairableMemoryFlag_v1": "unrepairable_memory",
    "nvmlDeviceGetPcieReplayCounter": "pcie_replay",
    "nvmlDeviceGetSupportedEventTypes": "supported_events",
}
_KEYED = {  # dict attribute keyed by the call's argument(s)
    "nvmlDeviceGetInforomVersion": "inforom_versions",
    "nvmlDeviceGetTemperatureThreshold": "thresholds",
    "nvmlDeviceGetClockInfo": "clocks_mhz",
    "nvmlDeviceGetTotalEccErrors": "ecc",
    "nvmlDeviceGetRetiredPages": "retired_pages",
    "nvmlDeviceGetNvLinkErrorCounter": "nvlink_errors",
}
_PAIRS = {  # (current, max) tuple attribute, position
    "nvmlDeviceGetCurrPcieLinkGeneration": ("pcie_gen", 0),
    "nvmlDeviceGetMaxPcieLinkGeneration": ("pcie_gen", 1),
    "nvmlDeviceGetCurrPcieLinkWidth": ("pcie_width", 0),
    "nvmlDeviceGetMaxPcieLinkWidth": ("pcie_width", 1),
}
_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")  # by NVML_VALUE_TYPE


def _apply_value(gpu: Any, fn: str, args: list[int], value: Any, fabric: dict[int, Any]) -> bool:
    """Set what one successful call returned; False if the call is unknown."""
    key: Any = args[0] if len(args) == 1 else tuple(args)
    if fn in _SCALARS:
        setattr(gpu, _SCALARS[fn], value)
    elif fn in _KEYED:
        getattr(gpu, _KEYED[fn])[key] = value
    elif fn in _PAIRS:
        attr, pos = _PAIRS[fn]
        pair = list(getattr(gpu, attr))
        pair[pos] = value
        setattr(gpu, attr, tuple(pair))
    elif fn == "nvmlDeviceGetPciInfo_v3":
        gpu.pci_bus_id = value["busId"]
    elif fn == "nvmlDeviceGetViolationStatus":
        gpu.violation_ns[key] = value["violationTime"]
    elif fn == "nvmlDeviceGetUtilizationRates":
        gpu.utilization = (value["gpu"], value["memory"])
    elif fn in ("nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2"):
        gpu.memory_total, gpu.memory_used = value["total"], value["used"]
        gpu.memory_reserved = value["total"] - value["free"] - value["used"]
    elif fn == "nvmlDeviceGetRemappedRows":
        gpu.remapped_rows = tuple(value)
    elif fn == "nvmlDeviceGetNvLinkState":
        gpu.nvlink_states = [*gpu.nvlink_states[:key], value]
    elif fn == "nvmlDeviceGetGpuFabricInfoV":
        fabric[key] = value
    else:
        return False
    return True


def _replay_gpu(doc: dict[str, Any], real: Any, fake: Any) -> tuple[Any, list[str]]:
    gpu = fake.FakeGpu()
    fabric: dict[int, Any] = {}
    fabric_errors: dict[int, int] = {}
    unknown: list[str] = []
    for entry in doc["calls"]:
        fn, args = entry["fn"], list(entry.get("args", []))
        if "error" in entry:
            code = int(entry["error"])
            if fn == "nvmlDeviceGetNvLinkState":
                gpu.nvlink_states, gpu.nvlink_end_error = gpu.nvlink_states[: args[0]], code
            elif fn == "nvmlDeviceGetGpuFabricInfoV":
                fabric_errors[args[0]] = code
            elif args:
                gpu.call_errors[(fn, tuple(args))] = code
            else:
                gpu.errors[fn] = code
        elif not _apply_value(gpu, fn, args, entry.get("value"), fabric):
            unknown.append(fn)
    if fabric:
        info = fabric.get(3) or fabric[2]
        gpu.fabric = fake.FakeFabric(
            state=info["state"], status=info["status"], cluster_uuid=bytes(info["clusterUuid"]),
            clique_id=info["cliqueId"], health_mask=info["healthMask"],
            health_summary=info.get("healthSummary", 0),
            versions=frozenset(version for version, number in (
                (real.nvmlGpuFabricInfo_v2, 2), (real.nvmlGpuFabricInfo_v3, 3)) if number in fabric),
        )
    elif fabric_errors:
        first = next(iter(fabric_errors.values()))
        gpu.errors["nvmlDeviceGetGpuFabricInfoV"] = fabric_errors.get(2, first)
    for f in doc.get("fields", []):
        key = (int(f["id"]), int(f["scope"]))
        if int(f["ret"]) == real.NVML_SUCCESS:
            gpu.field_values[key] = (int(f["type"]), f["value"])
        else:
            gpu.field_returns[key] = int(f["ret"])
    return gpu, unknown


def fake_from_capture(doc: dict[str, Any]) -> FakeNvml:
    """A `FakeNvml` answering as the captured node did; unknown calls are a ValueError."""
    import pynvml as real

    from tests.fakes import fake_pynvml as fake

    system = doc["system"]
    errors = {fn: int(e["error"]) for fn, e in system.items() if "error" in e}
    value = {fn: e.get("value") for fn, e in system.items()}
    gpus, unknown = [], []
    for gpu_doc in doc["gpus"]:
        gpu, missing = _replay_gpu(gpu_doc, real, fake)
        gpus.append(gpu)
        unknown += [f"GPU {gpu_doc.get('index')}: {fn}" for fn in missing]
    if unknown:
        raise ValueError("capture has calls this replay does not know: " + ", ".join(unknown))
    return fake.FakeNvml(
        gpus,
        driver_version=value.get("nvmlSystemGetDriverVersion") or "",
        cuda_driver_version=int(value.get("nvmlSystemGetCudaDriverVersion_v2") or 0),
        nvml_version=value.get("nvmlSystemGetNVMLVersion") or "",
        system_errors=errors,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: capture this node's GPUs to --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--keep-ids", action="store_true", help="keep real UUIDs and serials")
    args = parser.parse_args(argv)
    import pynvml

    try:
        doc = capture(pynvml)
    except pynvml.NVMLError as exc:
        print(f"capture_nvml: NVML unavailable: {exc}", file=sys.stderr)
        return 1
    if not args.keep_ids:
        anonymise(doc)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(dumps_capture(doc))
    print(f"captured {len(doc['gpus'])} GPU(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
