"""The unix datagram socket under the progress listener: the sender's kernel credentials
(SO_PASSCRED) and claiming a socket path without clobbering a live listener or a foreign file."""

from __future__ import annotations

import socket
import stat
import struct
from pathlib import Path

MAX_UNIX_PATH_BYTES = 107
PASSCRED: int | None = getattr(socket, "SO_PASSCRED", None)
_PEERCRED_TYPE: int | None = getattr(socket, "SCM_CREDENTIALS", None)
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
CRED_SPACE = socket.CMSG_SPACE(_UCRED.size)


def sender_credentials(ancillary: list[tuple[int, int, bytes]]) -> tuple[int, int] | None:
    """(pid, uid) from an SCM_CREDENTIALS control message, if the kernel attached one."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _PEERCRED_TYPE and len(payload) >= _UCRED.size:
            pid, uid, _gid = _UCRED.unpack_from(payload)
            return pid, uid
    return None


class ProgressListenerError(RuntimeError):
    """The listener could not bind its socket."""


def claim_socket_path(path: Path) -> None:
    """Make `path` bindable: remove a stale socket, refuse a live one or a non-socket file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ProgressListenerError(f"{path} exists and is not a socket; not touching it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)  # nobody bound there: a leftover of a dead listener
        return
    except OSError as exc:
        raise ProgressListenerError(f"cannot probe existing socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise ProgressListenerError(f"another listener is bound to {path}")
