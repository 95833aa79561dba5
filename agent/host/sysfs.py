"""Small, bounded reads of sysfs attribute files that turn failures into `Unavailable`.

sysfs attributes are short text files; a read that fails (missing file, EINVAL from a driver
that does not implement a counter, permission) is data, never an exception.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from agent.model import ReadStatus, Unavailable

MAX_ATTR_BYTES = 4096  # sysfs attributes fit in one page; never read more from a file
# errno values with which a driver says "this attribute is not implemented here".
_UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENODATA})


def read_attr(path: Path) -> str | Unavailable:
    """Text of one attribute file, stripped; `Unavailable` when it cannot be read (a missing
    file or EINVAL/EOPNOTSUPP from the driver is NOT_SUPPORTED, anything else ERROR)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, MAX_ATTR_BYTES)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return Unavailable(ReadStatus.NOT_SUPPORTED, f"{path.name}: no such attribute")
    except OSError as exc:
        status = ReadStatus.NOT_SUPPORTED if exc.errno in _UNSUPPORTED else ReadStatus.ERROR
        return Unavailable(status, f"{path.name}: {exc.strerror or exc}")
    return data.decode("ascii", errors="replace").strip()


def read_int(path: Path) -> int | Unavailable:
    """An integer attribute (decimal, or 0x-prefixed hex)."""
    text = read_attr(path)
    if isinstance(text, Unavailable):
        return text
    try:
        return int(text, 0) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return Unavailable(ReadStatus.ERROR, f"{path.name}: not an integer: {text[:40]!r}")


def required(value: str | Unavailable) -> str | Unavailable:
    """An attribute that always exists when its directory does: missing is an ERROR."""
    if isinstance(value, Unavailable) and value.status is ReadStatus.NOT_SUPPORTED:
        return Unavailable(ReadStatus.ERROR, value.detail)
    return value


def worst(field: str, problems: dict[str, Unavailable], limit: int = 12) -> Unavailable | None:
    """Roll the detailed problems of one HostSample field (`field` and `field:...` keys) into
    one entry: ERROR if any is an ERROR, with every detail (up to `limit`) in its text."""
    mine = [(k, v) for k, v in problems.items() if k == field or k.startswith(field + ":")]
    if not mine:
        return None
    status = (
        ReadStatus.ERROR
        if any(v.status is ReadStatus.ERROR for _, v in mine)
        else ReadStatus.NOT_SUPPORTED
    )
    parts = [f"{k[len(field) + 1 :] or field}: {v.detail}" for k, v in mine[:limit]]
    if len(mine) > limit:
        parts.append(f"... {len(mine) - limit} more")
    return Unavailable(status, "; ".join(parts))


def list_dir(path: Path) -> list[str] | Unavailable:
    """Sorted entry names of a directory."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return Unavailable(ReadStatus.NOT_SUPPORTED, f"{path}: no such directory")
    except OSError as exc:
        return Unavailable(ReadStatus.ERROR, f"{path}: {exc.strerror or exc}")


def resolve_under(root: Path, path: Path) -> Path | Unavailable:
    """Resolve symlinks of `path`, refusing results that leave `root` (a hostile tree)."""
    try:
        resolved = path.resolve(strict=True)
        base = root.resolve(strict=True)
    except FileNotFoundError:
        return Unavailable(ReadStatus.NOT_SUPPORTED, f"{path}: does not exist")
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop
        return Unavailable(ReadStatus.ERROR, f"{path}: {exc}")
    if resolved != base and base not in resolved.parents:
        return Unavailable(ReadStatus.ERROR, f"{path}: resolves outside {root}")
    return resolved
