"""Slurm host lists (`node[1-3,07-08],gpu-a`), expanded without asking Slurm. Pure."""

from __future__ import annotations

import re

_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_EXPANDED = 100_000


class HostlistError(ValueError):
    """A host list Slurm would not accept."""


def check_node_name(name: str) -> str:
    """`name` when it is a plain Slurm node name; ValueError otherwise."""
    if not isinstance(name, str) or not _NODE_NAME.match(name):
        raise ValueError(f"not a Slurm node name: {name!r} (letters, digits, '.', '_', '-')")
    return name


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise HostlistError(f"nested brackets in host list {text!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError(f"unbalanced ']' in host list {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise HostlistError(f"unbalanced '[' in host list {text!r}")
    parts.append(text[start:])
    return parts


def _range(spec: str, whole: str) -> list[str]:
    out: list[str] = []
    for item in spec.split(","):
        lo, sep, hi = item.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise HostlistError(f"bad range {item!r} in host list {whole!r}")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or last - first > _MAX_EXPANDED:
            raise HostlistError(f"bad range {item!r} in host list {whole!r}")
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        out.extend(f"{n:0{width}d}" for n in range(first, last + 1))
    return out


def _expand_one(pattern: str, whole: str) -> list[str]:
    open_at = pattern.find("[")
    if open_at < 0:
        return [pattern]
    close_at = pattern.index("]", open_at)
    head, body, tail = pattern[:open_at], pattern[open_at + 1:close_at], pattern[close_at + 1:]
    return [head + mid + rest for mid in _range(body, whole) for rest in _expand_one(tail, whole)]


def expand_hostlist(text: str) -> list[str]:
    """Every node a Slurm host list names, in order; "" and "(null)" name none."""
    text = text.strip()
    if text in ("", "(null)", "None"):
        return []
    names: list[str] = []
    for part in _split_top(text):
        if not part:
            raise HostlistError(f"empty item in host list {text!r}")
        names.extend(_expand_one(part, text))
    for name in names:
        if not _NODE_NAME.match(name):
            raise HostlistError(f"bad node name {name!r} in host list {text!r}")
    return names
