"""The incremental SSE decoder, against recorded TGI streams split every possible way."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.sse import MAX_LINE_CHARS, SSEDecoder, SSELimitError

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"


def _stream(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


def _decode(chunks: Iterable[bytes]) -> list[str]:
    decoder = SSEDecoder()
    events: list[str] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def _split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def _expected(data: bytes) -> list[str]:
    """The payloads of a well-formed LF-framed fixture, computed independently of the decoder."""
    blocks = data.decode("utf-8").split("\n\n")
    payloads = []
    for block in blocks:
        lines = [line for line in block.split("\n") if line.startswith("data:")]
        if lines:
            payloads.append("\n".join(line[5:].removeprefix(" ") for line in lines))
    return payloads


def test_reflection_stream_in_one_chunk() -> None:
    events = _decode([_stream("reflection_answer.sse")])
    assert len(events) == 66
    first = json.loads(events[0])
    assert first["token"] == {
        "id": 128256,
        "text": "<thinking>",
        "logprob": -0.0003,
        "special": True,
    }
    last = json.loads(events[-1])
    assert last["details"]["finish_reason"] == "eos_token"


@pytest.mark.parametrize(
    "name", ["reflection_answer.sse", "old_framing.sse", "keepalive.sse", "generation_error.sse"]
)
def test_every_split_point_gives_the_same_events(name: str) -> None:
    data = _stream(name)
    expected = _expected(data)
    assert expected and _decode([data]) == expected
    for cut in range(len(data) + 1):
        assert _decode(_split(data, [cut])) == expected, cut


def test_every_two_cut_split_of_a_multibyte_token() -> None:
    # " ✓" (3 UTF-8 bytes) and " —" (3 bytes): cut twice anywhere near them.
    data = _stream("reflection_answer.sse")
    expected = _expected(data)
    for marker in (" ✓".encode(), " —".encode()):
        at = data.index(marker)
        for a in range(at - 2, at + 6):
            for b in range(a, at + 8):
                assert _decode(_split(data, [a, b])) == expected


def test_byte_at_a_time() -> None:
    data = _stream("reflection_answer.sse")
    assert _decode(data[i : i + 1] for i in range(len(data))) == _expected(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=8419), max_size=60))
def test_any_random_chunking_decodes_the_same_events(cuts: list[int]) -> None:
    data = _stream("reflection_answer.sse")
    assert _decode(_split(data, [c for c in cuts if c <= len(data)])) == _expected(data)


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings(newline: bytes) -> None:
    lf = _stream("reflection_answer.sse")
    expected = _expected(lf)
    data = lf.replace(b"\n", newline)
    assert _decode([data]) == expected
    rng = random.Random(7)
    for _ in range(200):
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 40))]
        assert _decode(_split(data, cuts)) == expected


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # The LF completes the CRLF: it must not count as the blank line that ends the event.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\n\r") == ["a\nb"]
    assert decoder.feed(b"\ndata: c\r\n\r\n") == ["c"]
    assert decoder.close() == []


def test_keep_alive_comments_are_ignored() -> None:
    assert _decode([b":\n\n:\n\n"]) == []
    assert _decode([b": ping\ndata: x\n:\n\n"]) == ["x"]
    events = _decode([_stream("keepalive.sse")])
    assert [json.loads(e)["index"] for e in events] == [1, 2, 3]


def test_data_without_space_and_exactly_one_space_stripped() -> None:
    assert _decode([b"data:a\n\n", b"data: b\n\n", b"data:  c\n\n"]) == ["a", "b", " c"]
    assert [json.loads(e)["index"] for e in _decode([_stream("old_framing.sse")])] == [1, 2, 3]


def test_multiple_data_lines_are_joined_with_newline() -> None:
    assert _decode([b"data: one\ndata:two\ndata\ndata: \n\n"]) == ["one\ntwo\n\n"]


def test_other_fields_and_events_without_data() -> None:
    stream = b"event: token\nid: 7\nretry: 1000\ndata: x\n\nevent: ping\nid: 8\n\nfoo: bar\n\n"
    assert _decode([stream]) == ["x"]
    # A field named "database" is not "data".
    assert _decode([b"database: x\n\n"]) == []


def test_empty_data_line_is_an_event() -> None:
    assert _decode([b"data:\n\n"]) == [""]


def test_final_event_without_blank_line_is_returned_on_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\n\ndata: two") == ["one"]
    assert decoder.close() == ["two"]
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\n\ndata: two\r") == ["one"]
    assert decoder.close() == ["two"]
    assert decoder.close() == []


def test_feed_after_close_is_an_error() -> None:
    decoder = SSEDecoder()
    decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: x\n\n")


def test_utf8_split_inside_a_character() -> None:
    payload = "data: é ✓ 🙂\n\n".encode()
    for cut in range(len(payload) + 1):
        assert _decode(_split(payload, [cut])) == ["é ✓ 🙂"]
    assert _decode(payload[i : i + 1] for i in range(len(payload))) == ["é ✓ 🙂"]


def test_leading_bom_is_dropped_only_at_stream_start() -> None:
    bom = "\ufeff".encode()
    assert _decode([bom[:1], bom[1:] + b"data: x\n\n"]) == ["x"]
    assert _decode([b"data: \xef\xbb\xbfx\n\n"]) == ["\ufeffx"]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert _decode([b"data: \xff\n\n"]) == ["\ufffd"]


def test_long_line_in_tiny_chunks_is_linear() -> None:
    # A guard against quadratic re-joining (minutes), not a benchmark: the bound is loose.
    data = b"data: " + b"x" * 1_000_000 + b"\n\n"  # 1 MB in 4-byte chunks
    start = time.perf_counter()
    events = _decode(data[i : i + 4] for i in range(0, len(data), 4))
    assert events == ["x" * 1_000_000]
    assert time.perf_counter() - start < 5


def test_thousands_of_small_events() -> None:
    one = _stream("reflection_answer.sse")
    data = one * 200  # 13,200 events
    events = _decode(data[i : i + 1500] for i in range(0, len(data), 1500))
    assert events == _expected(one) * 200


def test_a_line_is_refused_once_it_grows_past_the_bound_and_no_more_is_held() -> None:
    decoder = SSEDecoder()
    piece = b"x" * 4096
    fed = len(b"data: ")
    tracemalloc.start()
    try:
        decoder.feed(b"data: ")
        with pytest.raises(SSELimitError):
            while fed < 2 * MAX_LINE_CHARS:  # 2 MiB without a newline, in small chunks
                fed += len(piece)
                decoder.feed(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert MAX_LINE_CHARS < fed <= MAX_LINE_CHARS + len(piece)
    assert peak < 1.5 * MAX_LINE_CHARS
    with pytest.raises(RuntimeError):
        decoder.feed(b"\n\n")


@pytest.mark.parametrize("chunk_size", [7, 65536, 3 * MAX_LINE_CHARS])
def test_a_line_of_exactly_the_bound_is_accepted_and_one_more_character_refused(
    chunk_size: int,
) -> None:
    def chunks(data: bytes) -> list[bytes]:
        return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]

    value = "y" * (MAX_LINE_CHARS - len("data: "))
    assert _decode(chunks(f"data: {value}\n\n".encode())) == [value]
    with pytest.raises(SSELimitError):
        _decode(chunks(f"data: {value}y\n\n".encode()))


def test_an_event_whose_data_lines_add_up_past_the_bound_is_refused() -> None:
    decoder = SSEDecoder()
    line = b"data: " + b"z" * 1000 + b"\n"
    lines = 0
    with pytest.raises(SSELimitError):
        while lines < 2 * MAX_LINE_CHARS // 1000:
            lines += 1
            decoder.feed(line)
    # 1000 characters per line and a line break between them.
    assert MAX_LINE_CHARS < lines * 1001 <= MAX_LINE_CHARS + 1002
    # Many lines that each dispatch their own event are fine.
    assert len(_decode([line + b"\n"] * 2000)) == 2000
