"""Incremental decoder for Server-Sent Events, as TGI's `/generate_stream` sends them.

Bytes arrive in arbitrary pieces (TCP segments, proxies re-chunking), so everything here is
resumable: UTF-8 is decoded incrementally, a line may span many chunks, and a CR at the end of
one chunk may be the first half of a CRLF whose LF arrives in the next.

Only `data` matters to TGI clients; `event`, `id` and `retry` fields and comment lines
(TGI's `:` keep-alives) are skipped. Follows the WHATWG event-stream parsing rules, except that
an unterminated final event is still delivered by `close()`: a TGI final event is complete
JSON, and the caller is better placed to judge a truncated payload.
"""

from __future__ import annotations

import codecs
import re

# Only CR, LF and CRLF end lines; str.splitlines would also split on \x0b, \x1c, U+2028 etc.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SSEDecoder:
    """Feed it bytes, get back the data payload of each completed event."""

    __slots__ = ("_decoder", "_partial", "_skip_lf", "_data", "_closed")

    def __init__(self) -> None:
        # utf-8-sig drops a leading BOM, as the SSE spec requires, and only at the very start.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._partial: list[str] = []  # pieces of the current unterminated line
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF completes a CRLF
        self._data: list[str] | None = None  # data lines of the event being built
        self._closed = False

    def feed(self, chunk: bytes) -> list[str]:
        """Decode `chunk`; return the data of every event that it completes, in order."""
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() after close()")
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
            self._partial.append(text)
            return []
        if self._partial:
            self._partial.append(text)
            text = "".join(self._partial)
            self._partial.clear()
        lines = _LINE_BREAK.split(text)
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        elif text[-1] == "\r":
            self._skip_lf = True
        return self._process(lines)

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
        for line in lines:
            if not line:
                if data is not None:
                    events.append("\n".join(data))
                    data = None
                continue
            if line.startswith("data:"):
                value = line[5:]
                if value[:1] == " ":
                    value = value[1:]
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif line == "data":
                # A field name without a colon has an empty value.
                if data is None:
                    data = [""]
                else:
                    data.append("")
            # Anything else is a comment (":...") or a field TGI clients do not need.
        self._data = data
        return events
