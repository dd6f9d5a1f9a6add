"""Lines out of a byte stream, for every door that carries lines over TCP.

Our own framing, not LineReceiver's: LineReceiver drops the connection (and
the good lines behind it) on one overlong line, where a door should discard
that line alone, answer it, and go on.
"""

from __future__ import annotations

from collections.abc import Iterator


class LineFramer:
    """Splits a byte stream into lines on LF, never decoding.

    `feed` yields each complete line without its ending (a CR before the LF
    is dropped), or None where a line longer than ``max_line`` bytes (its
    ending included) was discarded.  Splitting happens on bytes, so a UTF-8
    character split across reads arrives whole.  The caller may stop
    consuming at any point (a session that closed): the lines not yet
    yielded are dropped with the generator.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = b""
        self._discarding = False

    def feed(self, data: bytes) -> Iterator[bytes | None]:
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1 :]
            self._discarding = False
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) >= self.max_line:
            self._buffer = b""
            self._discarding = True
            lines.append(None)
        for line in lines:
            if line is None or len(line) + 1 > self.max_line:
                yield None
            else:
                yield line[:-1] if line.endswith(b"\r") else line
