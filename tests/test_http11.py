"""zigziik._http11's pure parts: request heads, response heads, framing, chunked bodies;
no network (the pool itself is tested against raw servers in test_net.py)."""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zigziik._http11 import (
    _MAX_HEAD,
    CHUNKED,
    UNTIL_CLOSE,
    ChunkedDecoder,
    Head,
    body_length,
    find_head_end,
    keeps_alive,
    parse_head,
    request_head,
)


def test_a_request_head_is_the_request_line_the_headers_and_a_blank_line() -> None:
    request = httpx.Request(
        "POST", "http://example.test:8080/a%20b?x=1", headers={"X-Key": "v"}, content=b"{}"
    )
    head = request_head(request)
    assert head.startswith(b"POST /a%20b?x=1 HTTP/1.1\r\nHost: example.test:8080\r\n")
    assert b"\r\nX-Key: v\r\n" in head and b"\r\nContent-Length: 2\r\n" in head
    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n") == len(request.headers.raw) + 2


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"X-Bad": "a\r\nX-Injected: 1"}),
        ("GET", {"X-Bad": "a\x00b"}),
        ("GET", {"X-Bad": "a\x7fb"}),
        ("GET", {"Bad Name": "x"}),
        ("GET", {"Bad:Name": "x"}),
        ("GE T", {}),
        ("GET\r\n", {}),
    ],
)
def test_a_request_head_refuses_what_would_break_the_message(
    method: str, headers: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="illegal method or header name|control character"):
        request_head(httpx.Request(method, "http://example.test/", headers=headers))


def test_a_tab_and_bytes_beyond_ascii_are_fine_in_a_value() -> None:
    request = httpx.Request("GET", "http://example.test/", headers={"X-V": "a\tb æ".encode()})
    assert b"X-V: a\tb \xc3\xa6\r\n" in request_head(request)


def test_a_response_head_parses_into_version_status_reason_and_headers() -> None:
    head = parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length:  3 \r\nX-A: b:c")
    assert (head.version, head.status, head.reason) == (b"HTTP/1.1", 404, b"Not Found")
    assert head.headers == [(b"Content-Length", b"3"), (b"X-A", b"b:c")]
    assert type(head.status) is int


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/11 200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1 200 OK\r\n continued",
        b"HTTP/1.1 200 OK\r\nNo colon",
        b"HTTP/1.1 200 OK\r\nSpace : x",
        b"HTTP/1.1 200 OK\r\nX: a\x0bb",
        b"HTTP/1.1 200 O\x00K",
    ],
)
def test_a_malformed_response_head_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="status line|header line|continuation|control character"):
        parse_head(data)


def test_the_head_ends_at_the_first_blank_line_whatever_the_line_ends() -> None:
    head = b"HTTP/1.1 200 OK\r\nA: b"
    assert find_head_end(head + b"\r\n\r\nbody\r\n\r\n") == (len(head), len(head) + 4)
    bare = b"HTTP/1.1 200 OK\nA: b"
    assert find_head_end(bare + b"\n\nbody\n\n") == (len(bare), len(bare) + 2)
    assert find_head_end(bare + b"\n\r\nbody") == (len(bare), len(bare) + 3)
    assert find_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n") == (-1, -1)


def _head(status: int, *headers: tuple[bytes, bytes], version: bytes = b"HTTP/1.1") -> Head:
    return Head(version, status, b"", list(headers))


@pytest.mark.parametrize(
    ("method", "head", "expected"),
    [
        ("GET", _head(200, (b"Content-Length", b"12")), 12),
        ("GET", _head(200, (b"content-length", b"7, 7")), 7),
        ("GET", _head(200, (b"Transfer-Encoding", b"Chunked")), CHUNKED),
        ("GET", _head(200, (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")), CHUNKED),
        ("GET", _head(200), UNTIL_CLOSE),
        ("HEAD", _head(200, (b"Content-Length", b"12")), 0),
        ("GET", _head(204, (b"Content-Length", b"12")), 0),
        ("GET", _head(304, (b"Content-Length", b"12")), 0),
        ("GET", _head(101), 0),
    ],
)
def test_the_body_length_follows_rfc_9112(method: str, head: Head, expected: int) -> None:
    assert body_length(method, head) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Content-Length", b"1"), (b"Content-Length", b"2")],
        [(b"Content-Length", b"1, 2")],
        [(b"Content-Length", b"+1")],
        [(b"Content-Length", b"")],
        [(b"Content-Length", b"9" * 19)],
        [(b"Transfer-Encoding", b"gzip, chunked")],
        [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
    ],
)
def test_a_framing_that_cannot_be_trusted_is_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ValueError, match="Content-Length|Transfer-Encoding"):
        body_length("GET", _head(200, *headers))


@pytest.mark.parametrize(
    ("head", "request_headers", "expected"),
    [
        (_head(200), {}, True),
        (_head(200, (b"Connection", b"close")), {}, False),
        (_head(200, (b"connection", b"Keep-Alive, Close")), {}, False),
        (_head(200), {"Connection": "close"}, False),
        (_head(200, version=b"HTTP/1.0"), {}, False),
        (_head(101), {}, False),
    ],
)
def test_keep_alive_only_for_http_1_1_without_close(
    head: Head, request_headers: dict[str, str], expected: bool
) -> None:
    request = httpx.Request("GET", "http://example.test/", headers=request_headers)
    assert keeps_alive(request, head) is expected


def _chunked(pieces: list[bytes], extension: bytes, trailers: bytes) -> bytes:
    out = b"".join(b"%x%b\r\n%b\r\n" % (len(p), extension, p) for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


@given(
    pieces=st.lists(st.binary(max_size=300), max_size=8),
    extension=st.sampled_from([b"", b";a=b", b"; q"]),
    trailers=st.sampled_from([b"", b"X-T: 1\r\n", b"A: 1\r\nB: 2\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
    extra=st.binary(max_size=5),
)
def test_a_chunked_body_decodes_to_its_bytes_however_it_is_split(
    pieces: list[bytes], extension: bytes, trailers: bytes, cuts: list[int], extra: bytes
) -> None:
    encoded = _chunked(pieces, extension, trailers)
    wire = encoded + extra
    decoder = ChunkedDecoder()
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        if cut > start:
            out += decoder.feed(wire[start:cut])
            start = cut
    assert decoder.done
    assert b"".join(out) == b"".join(pieces)
    assert all(out)  # no empty pieces handed on
    assert decoder.leftover is bool(extra)


@pytest.mark.parametrize(
    "wire",
    [
        b"g\r\n",
        b"5\r\nhelloXX",
        b"-1\r\n",
        b"1" * 17 + b"\r\n",
        b"5" + b" " * 2000,
    ],
)
def test_a_malformed_chunked_body_is_refused(wire: bytes) -> None:
    with pytest.raises(ValueError, match="chunk size|does not end with CRLF|too long"):
        ChunkedDecoder().feed(wire)


# -- what the refusals say, whole ----------------------------------------------------------------


def whole(message: str) -> str:
    """A ``match`` for exactly ``message``."""
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("method", "headers", "message"),
    [
        ("GÉT", {}, "an illegal method or header name in b'G?T\\nHost'"),
        ("GET", {"Bad Name": "x"}, "an illegal method or header name in b'GET\\nHost\\nBad Name'"),
        ("GET", {"X": "a\x00"}, "a header value or the target holds a control character"),
    ],
)
def test_a_refused_request_head_says_why(
    method: str, headers: dict[str, str], message: str
) -> None:
    request = httpx.Request(method, "http://example.test/", headers=headers)
    with pytest.raises(ValueError, match=whole(message)):
        request_head(request)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ICY 200 OK", "not an HTTP/1.x status line: b'ICY 200 OK'"),
        (b"X" * 150, f"not an HTTP/1.x status line: {b'X' * 100!r}"),
        (b"HTTP/1.1 200 OK\r\n continued", "a continuation line before any header"),
        (b"HTTP/1.1 200 OK\r\nNo colon", "not a header line: b'No colon'"),
        (b"HTTP/1.1 200 OK\r\n" + b"Y" * 150, f"not a header line: {b'Y' * 100!r}"),
        (b"HTTP/1.1 200 OK\r\nX: a\x0bb", "a header value holds a control character"),
    ],
)
def test_a_refused_response_head_says_why(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=whole(message)):
        parse_head(data)


def test_a_folded_header_joins_its_lines_with_one_space() -> None:
    head = parse_head(b"HTTP/1.0 200 OK\r\nX-A: one \r\n\t two  \r\n   three\r\nX-B: b")
    assert head.version == b"HTTP/1.0"
    assert head.headers == [(b"X-A", b"one two three"), (b"X-B", b"b")]
    bare = parse_head(b"HTTP/1.1 204 No Content\nX-A: one\n two")
    assert (bare.status, bare.reason, bare.headers) == (204, b"No Content", [(b"X-A", b"one two")])


def test_content_length_has_at_most_18_digits_and_says_what_it_refused() -> None:
    assert body_length("GET", _head(200, (b"Content-Length", b"9" * 18))) == int("9" * 18)
    with pytest.raises(ValueError, match=whole("bad Content-Length: b'1, 2'")):
        body_length("GET", _head(200, (b"Content-Length", b"1"), (b"Content-Length", b"2")))
    with pytest.raises(ValueError, match=whole("unsupported Transfer-Encoding: b'gzip, chunked'")):
        body_length("GET", _head(200, (b"Transfer-Encoding", b"gzip, chunked")))
    assert body_length("GET", _head(199)) == 0
    assert body_length("GET", _head(200, (b"Content-Length", b"0"))) == 0
    assert body_length("GET", _head(205, (b"Content-Length", b"3"))) == 3


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"5\r\nhelloX", "a chunk does not end with CRLF"),
        (b"5\r\nhello\rX", "a chunk does not end with CRLF"),
        (b"zz\r\n", "bad chunk size line: b'zz\\r\\n'"),
        (b"q" * 100 + b"\n", f"bad chunk size line: {b'q' * 80!r}"),
        (b"5" * 1025, "a chunk size line is too long"),
        (b"0\r\n" + b"T" * 70_000, "the trailers are too long"),
    ],
)
def test_a_malformed_chunked_body_says_why(wire: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=whole(message)):
        ChunkedDecoder().feed(wire)


def test_a_chunk_end_split_after_its_cr_waits_for_the_lf() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhello\r") == [b"hello"]
    assert decoder.feed(b"\n0\r\n\r\n") == []
    assert decoder.done and not decoder.leftover
    size_line = ChunkedDecoder()
    assert size_line.feed(b"5" * 1024) == []  # up to 1 KiB without its end: more may come


def test_a_chunk_may_end_with_a_bare_line_feed() -> None:
    """As h11 reads it: LF alone ends a chunk's data, and nothing after it is lost."""
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhello\n6\nworld!\n0\n\n") == [b"hello", b"world!"]
    assert decoder.done and not decoder.leftover


def test_empty_list_elements_of_transfer_encoding_are_ignored() -> None:
    """RFC 9110 section 5.6.1: a recipient accepts empty elements of a list."""
    head = _head(200, (b"Transfer-Encoding", b" chunked , "))
    assert body_length("GET", head) == CHUNKED


def test_a_chunk_size_line_that_is_empty_is_refused_and_says_only_its_line() -> None:
    with pytest.raises(ValueError, match=whole("bad chunk size line: b'\\n'")):
        ChunkedDecoder().feed(b"\nmore")
    with pytest.raises(ValueError, match=whole("bad chunk size line: b'zz\\r\\n'")):
        ChunkedDecoder().feed(b"zz\r\nmore")


def test_trailers_up_to_the_longest_head_wait_for_their_end_and_only_a_blank_line_ends_them() -> (
    None
):
    decoder = ChunkedDecoder()
    assert decoder.feed(b"0\r\n" + b"T" * _MAX_HEAD) == []  # not too long: more may come
    assert not decoder.done
    for line in (b"X", b" ", b"XX\r", b"\r X"):  # not blank, whatever they hold
        decoder = ChunkedDecoder()
        assert decoder.feed(b"0\r\n" + line + b"\r\n\r\n") == []
        assert decoder.done and not decoder.leftover


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nX: a\r\n \x0b",  # a folded line of a control character alone
        b"HTTP/1.1 200 OK\r\nX: a\x0c",  # at the end of a value
        b"HTTP/1.1 200 OK\r\nX: \x0ba",  # at its start
    ],
)
def test_a_control_character_at_either_end_of_a_value_is_refused_not_stripped(data: bytes) -> None:
    with pytest.raises(ValueError, match=whole("a header value holds a control character")):
        parse_head(data)


def test_only_spaces_and_tabs_are_stripped_from_values_and_folded_lines() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nX-A: XoneX\r\n\tXtwoX \r\nX-B: \t XbX\t ")
    assert head.headers == [(b"X-A", b"XoneX XtwoX"), (b"X-B", b"XbX")]
    empty = parse_head(b"HTTP/1.1 200 OK\r\nX-A:\r\n  two")  # folded onto an empty value
    assert empty.headers == [(b"X-A", b"two")]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\nA: b\n\n",
        b"HTTP/1.1 200 OK\nA: b\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n\n",
        b"HTTP/1.1 200 OK\r\nA: b\n\r\n",
    ],
)
def test_a_head_ended_by_bare_line_feeds_ends_there_whatever_crlfs_the_body_holds(
    head: bytes,
) -> None:
    """As h11 reads it: the first blank line, not the first CRLF CRLF (in the body here)."""
    end = head.rstrip(b"\r\n")
    assert find_head_end(head + b"ab\r\n\r\ncd") == (len(end), len(head))


@pytest.mark.parametrize(
    ("buffer", "expected"),
    [
        (b"HTTP/1.1 200 OK\n\nab\r\n\r\ncd", (15, 17)),  # as many CRLFs after as LFs before
        (b"HTTP/1.1 200 OK\n\nab\r\n\r\n\x00\x00", (15, 17)),  # a binary body's NULs
        (b"\n\r\nHTTP/1.1 200 OK\r\n\r\n", (0, 3)),  # a blank line at the very start
        (b"HTTP/1.1 200 OK\r\nA: XX\r\n\r\nXX", (22, 26)),  # what is around the CRLF CRLF
    ],
)
def test_the_first_blank_line_ends_the_head_whatever_comes_around_or_after_it(
    buffer: bytes, expected: tuple[int, int]
) -> None:
    assert find_head_end(buffer) == expected
