"""A file inbox for run-time fault injection: an append-only file of fault items, one a line.

Each `poll()` costs one `stat` when nothing changed. New complete lines (at most `MAX_READ`
bytes a poll) are parsed with `parse_fault_item` and handed to `deliver`; blank lines and `#`
comments are skipped. A bad line never raises: its problem is kept in `errors()` (bounded) and
the other lines still apply. A file that is replaced or truncated is read again from its start.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable

from agent.gpu.sim_fault_items import FaultParseError, parse_fault_item
from agent.gpu.sim_faults import SimFault

MAX_READ = 64 * 1024
MAX_LINE = 4096
MAX_ERRORS = 100

Deliver = Callable[[SimFault], str | None]  # returns a problem text when the fault is refused


class FaultInbox:
    """Tails `path` and delivers each new fault item once."""

    def __init__(self, path: str, deliver: Deliver) -> None:
        self.path = path
        self._deliver = deliver
        self._lock = threading.Lock()
        self._offset = 0
        self._inode: int | None = None
        self._seen: tuple[int, int, int] | None = None
        self._partial = b""
        self._line_no = 0
        self._errors: deque[str] = deque(maxlen=MAX_ERRORS)

    def errors(self) -> list[str]:
        """Problems with lines read so far (the latest MAX_ERRORS)."""
        with self._lock:
            return list(self._errors)

    def poll(self) -> int:
        """Read newly appended lines and deliver their faults; returns how many were delivered."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return 0
            except OSError as e:
                self._error(f"cannot stat inbox: {e.strerror or e}")
                return 0
            signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            if signature == self._seen:
                return 0
            if st.st_ino != self._inode or st.st_size < self._offset:
                self._inode, self._offset, self._partial, self._line_no = st.st_ino, 0, b"", 0
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read(MAX_READ)
            except OSError as e:
                self._error(f"cannot read inbox: {e.strerror or e}")
                return 0
            self._offset += len(data)
            # Remember the signature only once everything up to it was read.
            self._seen = signature if self._offset >= st.st_size else None
            return self._consume(data)

    def _consume(self, data: bytes) -> int:
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_LINE:
            self._error(f"line {self._line_no + 1}: longer than {MAX_LINE} bytes, skipped")
            self._partial = b""
        delivered = 0
        for raw in lines:
            self._line_no += 1
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                self._error(f"line {self._line_no}: not UTF-8")
                continue
            if not text or text.startswith("#"):
                continue
            if len(raw) > MAX_LINE:
                self._error(f"line {self._line_no}: longer than {MAX_LINE} bytes, skipped")
                continue
            try:
                fault = parse_fault_item(text)
            except FaultParseError as e:
                self._error(f"line {self._line_no}: {e}")
                continue
            problem = self._deliver(fault)
            if problem:
                self._error(f"line {self._line_no} {text!r}: {problem}")
            else:
                delivered += 1
        return delivered

    def _error(self, text: str) -> None:
        if not self._errors or self._errors[-1] != text:
            self._errors.append(text)
