"""Incremental decoder for Server-Sent Events, as TGI's `/generate_stream` sends them.

Bytes arrive in arbitrary pieces (TCP segments, proxies re-chunking), so everything here is
resumable: UTF-8 is decoded incrementally, a line may span many chunks, and a CR at the end of
one chunk may be the first half of a CRLF whose LF arrives in the next.

Only `data` matters to TGI clients; `event`, `id` and `retry` fields and comment lines
(TGI's `:` keep-alives) are skipped. Follows the WHATWG event-stream parsing rules, except that
an unterminated final event is still delivered by `close()`: a TGI final event is complete
JSON, and the caller is better placed to judge a truncated payload. A line, or an event's data,
longer than `MAX_LINE_CHARS` is refused (`SSELimitError`) as soon as it grows past that, so a
broken backend cannot make the decoder buffer without bound.
"""

from __future__ import annotations

import codecs
import re
from typing import NoReturn

# Only CR, LF and CRLF end lines; str.splitlines would also split on \x0b, \x1c, U+2028 etc.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# One TGI event is a token in a few hundred bytes of JSON; this is thousands of times that.
MAX_LINE_CHARS = 1 << 20


class SSELimitError(ValueError):
    """A line or an event's data longer than MAX_LINE_CHARS; the decoder is closed after it."""


class SSEDecoder:
    """Feed it bytes, get back the data payload of each completed event."""

    __slots__ = (
        "_decoder",
        "_partial",
        "_partial_chars",
        "_skip_lf",
        "_data",
        "_data_chars",
        "_closed",
    )

    def __init__(self) -> None:
        # utf-8-sig drops a leading BOM, as the SSE spec requires, and only at the very start.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._partial: list[str] = []  # pieces of the current unterminated line
        self._partial_chars = 0
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF completes a CRLF
        self._data: list[str] | None = None  # data lines of the event being built
        self._data_chars = 0  # their length joined, counting the line breaks
        self._closed = False

    def feed(self, chunk: bytes) -> list[str]:
        """Decode `chunk`; return the data of every event that it completes, in order."""
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() after close() or an SSELimitError")
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\n" not in text and "\r" not in text:
            # Joining only when a line ends keeps a long line fed in tiny pieces linear.
            self._keep_partial(text)
            return []
        if self._partial:
            self._partial.append(text)
            text = "".join(self._partial)
            self._partial.clear()
            self._partial_chars = 0
        lines = _LINE_BREAK.split(text)
        rest = lines.pop()
        if rest:
            self._keep_partial(rest)
        elif text[-1] == "\r":
            self._skip_lf = True
        return self._process(lines)

    def _keep_partial(self, piece: str) -> None:
        self._partial_chars += len(piece)
        if self._partial_chars > MAX_LINE_CHARS:
            self._refuse("A line")
        self._partial.append(piece)

    def _refuse(self, what: str) -> NoReturn:
        self._closed = True
        self._partial.clear()
        self._data = None
        raise SSELimitError(
            f"{what} of the event stream is longer than {MAX_LINE_CHARS} characters"
        )

    def close(self) -> list[str]:
        """End of stream: flush what is left, including a final event with no blank line."""
        if self._closed:
            return []
        self._closed = True
        tail = self._decoder.decode(b"", final=True)
        if self._skip_lf and tail.startswith("\n"):
            tail = tail[1:]
        if tail:
            self._partial.append(tail)
        text = "".join(self._partial)
        self._partial.clear()
        lines = _LINE_BREAK.split(text) if text else []
        # An empty line dispatches whatever event is still being built.
        lines.append("")
        return self._process(lines)

    def _process(self, lines: list[str]) -> list[str]:
        events: list[str] = []
        data = self._data
        chars = self._data_chars
        for line in lines:
            if not line:
                if data is not None:
                    events.append("\n".join(data))
                    data = None
                    chars = 0
                continue
            if len(line) > MAX_LINE_CHARS:
                # An unterminated line is bounded as it grows; this is one that the chunk which
                # ended it took past the bound.
                self._refuse("A line")
            if line.startswith("data:"):
                value = line[5:]
                if value[:1] == " ":
                    value = value[1:]
            elif line == "data":
                value = ""  # a field name without a colon has an empty value
            else:
                continue  # a comment (":...") or a field TGI clients do not need
            chars += len(value) if data is None else len(value) + 1
            if chars > MAX_LINE_CHARS:
                self._refuse("The data of an event")
            if data is None:
                data = [value]
            else:
                data.append(value)
        self._data = data
        self._data_chars = chars
        return events
