"""One `nvmlDeviceGetFieldValues` call per GPU per sweep: HBM temperature, recovery action and
(where the GPU has them: NVLink5, Blackwell) the NVLink error counters of every link.

NVML does not raise per field: each `c_nvmlFieldValue_t` carries its own `nvmlReturn`, and a
field that failed holds garbage (NVIDIA/DCGM PR #311). Every field's return is checked before its
value is read; a failed field becomes `Unavailable`, never a number.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from agent.gpu.nvml_errors import NvmlCodes, NvmlModule, unavailable_for_code
from agent.gpu.nvml_readers import ReadContext
from agent.model import NVLINK5_COUNTERS, ReadStatus, Unavailable

# nvlink5_counters key -> its NVML_FI_DEV_NVLINK_COUNT_* constant
NVLINK5_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (key, f"NVML_FI_DEV_NVLINK_COUNT_{key.upper()}") for key in NVLINK5_COUNTERS)

NVLINK5_KEY = "nvlink5_counters"

# NVML_VALUE_TYPE_* constant -> c_nvmlValue_t union member
_VALUE_MEMBERS: tuple[tuple[str, str], ...] = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)

FieldId = int | tuple[int, int]  # fieldId, or (fieldId, scopeId) where scopeId is the link


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """The ids asked for in one call, and where each answer goes."""

    ids: tuple[FieldId, ...]
    members: dict[int, str]  # valueType -> union member
    nvlink5: tuple[tuple[int, str], ...]  # (position in ids, counter key)


MEMORY_TEMP_POS = 0
RECOVERY_ACTION_POS = 1


def make_plan(nvml: NvmlModule, link_count: int) -> FieldPlan:
    """Scalar fields first, then each NVLink5 counter for each link (constants the binding has)."""
    ids: list[FieldId] = [int(nvml.NVML_FI_DEV_MEMORY_TEMP),
                          int(nvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION)]
    nvlink5: list[tuple[int, str]] = []
    for key, constant in NVLINK5_FIELDS:
        field_id = getattr(nvml, constant, None)
        if field_id is None:
            continue
        for link in range(link_count):
            nvlink5.append((len(ids), key))
            ids.append((int(field_id), link))
    members = {
        int(getattr(nvml, const)): member
        for const, member in _VALUE_MEMBERS
        if hasattr(nvml, const)
    }
    return FieldPlan(ids=tuple(ids), members=members, nvlink5=tuple(nvlink5))


_PLAIN: dict[Any, Any] = {}  # pynvml struct type -> plain ctypes.Structure of the same layout


def plain_view(values: Any) -> Any:
    """The same memory as plain ctypes structs: pynvml's `_PrintableStructure` wraps every
    attribute access in Python, which costs more than the NVML call for a few hundred fields."""
    element = getattr(values, "_type_", None)
    if element is None:
        return values
    plain: Any = _PLAIN.get(element)
    if plain is None:
        fields = list(getattr(element, "_fields_", ()))
        plain = type("PlainFieldValue", (ctypes.Structure,), {"_fields_": fields})
        if ctypes.sizeof(plain) != ctypes.sizeof(element):
            plain = element
        _PLAIN[element] = plain
    if plain is element:
        return values
    try:
        return (plain * len(values)).from_buffer(values)
    except (TypeError, ValueError):
        return values


def decode(
    value: Any, plan: FieldPlan, nvml: NvmlModule, codes: NvmlCodes
) -> int | float | Unavailable:
    """One `c_nvmlFieldValue_t`: its value if its own nvmlReturn is success, else Unavailable."""
    ret = int(value.nvmlReturn)
    if ret != codes.success:
        return unavailable_for_code(ret, nvml, codes, where=f"field {value.fieldId}")
    member = plan.members.get(int(value.valueType))
    if member is None:
        return Unavailable(ReadStatus.ERROR, f"field {value.fieldId}: value type "
                                             f"{value.valueType} unknown")
    result: int | float = getattr(value.value, member)
    return result


def _sum_nvlink5(c: ReadContext, values: Any, plan: FieldPlan) -> object:
    sums: dict[str, int] = {}
    failed: dict[str, Unavailable] = {}
    first_failure: Unavailable | None = None
    success, members = c.codes.success, plan.members
    for pos, key in plan.nvlink5:
        value = values[pos]
        if value.nvmlReturn == success:  # the hot path: a few hundred per GPU on NVLink5
            member = members.get(value.valueType)
            if member is not None:
                sums[key] = sums.get(key, 0) + int(getattr(value.value, member))
                continue
        result = decode(value, plan, c.n, c.codes)
        if isinstance(result, Unavailable):
            first_failure = first_failure or result
            if result.status is not ReadStatus.NOT_SUPPORTED:
                failed.setdefault(key, result)
            continue
        sums[key] = sums.get(key, 0) + int(result)
    for key, why in failed.items():  # a partial sum would fake a counter reset: drop the key
        sums.pop(key, None)
        c.unavailable[f"{NVLINK5_KEY}.{key}"] = why
    if sums:
        return sums
    if first_failure is None:
        return Unavailable(ReadStatus.NOT_SUPPORTED, "binding has no NVLink5 counter fields")
    if not failed:
        c.state.remember_unsupported(NVLINK5_KEY, first_failure, c.now)
    return next(iter(failed.values()), first_failure)


def _nvlink5_skipped(c: ReadContext) -> Unavailable:
    cached = c.state.cached_unsupported(NVLINK5_KEY, c.now)
    if cached is not None:
        return cached
    links = c.unavailable.get("nvlinks")
    if links is not None:  # why we do not know the links is why we do not know their counters
        return Unavailable(links.status, f"NVLink count unknown: {links.detail}")
    return Unavailable(ReadStatus.NOT_SUPPORTED, "no NVLinks")


def read_field_values(c: ReadContext) -> tuple[object, ...]:
    """(memory_temp_c, recovery_action, nvlink5_counters) from a single field-values call."""
    links = c.state.link_count or 0
    ask_nvlink5 = links > 0 and c.state.cached_unsupported(NVLINK5_KEY, c.now) is None
    plan_key = (links, ask_nvlink5)
    plan: FieldPlan | None = c.state.plans.get(plan_key)
    if plan is None:
        plan = make_plan(c.n, links if ask_nvlink5 else 0)
        c.state.plans[plan_key] = plan
    values = plain_view(c.n.nvmlDeviceGetFieldValues(c.h, plan.ids))
    temp = decode(values[MEMORY_TEMP_POS], plan, c.n, c.codes)
    action = decode(values[RECOVERY_ACTION_POS], plan, c.n, c.codes)
    nvlink5 = _sum_nvlink5(c, values, plan) if ask_nvlink5 else _nvlink5_skipped(c)
    return (
        temp if isinstance(temp, Unavailable) else float(temp),
        action if isinstance(action, Unavailable) else int(action),
        nvlink5,
    )
