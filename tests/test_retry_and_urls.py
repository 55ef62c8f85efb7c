"""Retry delays, error mapping and URL handling: pure functions, no HTTP."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zigziik import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    UnprocessableEntityError,
)
from zigziik._urls import path_segment, resolve_link, same_origin, validate_base_url
from zigziik.errors import error_for_status
from zigziik.retry import Failure, FailureKind, parse_retry_after

CONNECT = Failure(FailureKind.CONNECT)
BROKEN = Failure(FailureKind.TRANSPORT)


def status(code: int, retry_after: float | None = None, reset: float | None = None) -> Failure:
    return Failure(FailureKind.STATUS, status_code=code, retry_after=retry_after, reset_after=reset)


def fixed() -> RetryPolicy:
    return RetryPolicy(jitter=False)


# -- retry ----------------------------------------------------------------------------------


def test_backoff_doubles_and_caps() -> None:
    policy = RetryPolicy(max_attempts=10, jitter=False)
    delays = [policy.backoff(n) for n in range(1, 9)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_stays_between_half_and_full() -> None:
    low = RetryPolicy(random=lambda: 0.0)
    high = RetryPolicy(random=lambda: 0.999)
    assert low.backoff(3) == pytest.approx(0.5)
    assert 0.99 < high.backoff(3) <= 1.0


def test_attempts_are_bounded() -> None:
    policy = fixed()
    assert policy.delay_for(1, "GET", BROKEN) == 0.25
    assert policy.delay_for(3, "GET", BROKEN) == 1.0
    assert policy.delay_for(4, "GET", BROKEN) is None


@pytest.mark.parametrize("code", [500, 502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "get"])
def test_idempotent_methods_retry_server_errors(code: int, method: str) -> None:
    assert fixed().delay_for(1, method, status(code)) == 0.25


@pytest.mark.parametrize("code", [500, 502, 503, 504, 429])
def test_post_is_never_retried_after_it_may_have_arrived(code: int) -> None:
    policy = fixed()
    assert policy.delay_for(1, "POST", status(code, retry_after=1)) is None
    assert policy.delay_for(1, "POST", BROKEN) is None


def test_post_is_retried_when_it_never_left() -> None:
    assert fixed().delay_for(1, "POST", CONNECT) == 0.25


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 410, 422, 501])
def test_client_errors_are_not_retried(code: int) -> None:
    assert fixed().delay_for(1, "GET", status(code)) is None


def test_429_waits_for_a_near_reset() -> None:
    policy = fixed()
    assert policy.delay_for(1, "GET", status(429, retry_after=3)) == 3
    assert policy.delay_for(1, "GET", status(429, reset=7)) == 7
    assert policy.delay_for(1, "GET", status(429, retry_after=2, reset=9)) == 2


def test_429_with_a_far_or_unknown_reset_is_raised() -> None:
    policy = fixed()
    assert policy.delay_for(1, "GET", status(429, retry_after=11)) is None
    assert policy.delay_for(1, "GET", status(429, reset=3600)) is None
    assert policy.delay_for(1, "GET", status(429)) is None


def test_retry_after_is_honoured_on_503() -> None:
    policy = fixed()
    assert policy.delay_for(1, "GET", status(503, retry_after=4)) == 4
    assert policy.delay_for(1, "GET", status(503, retry_after=120)) is None


def test_fatal_failures_are_not_retried() -> None:
    assert fixed().delay_for(1, "GET", Failure(FailureKind.FATAL)) is None


def test_never_policy() -> None:
    assert RetryPolicy.never().delay_for(1, "GET", CONNECT) is None


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"max_delay": float("inf")}]
)
def test_bad_policy_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_after_forms() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0.0
    for garbage in (None, "", "soon", "-3", "nan", "inf"):
        assert parse_retry_after(garbage, now) is None


def test_retry_after_edges() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    assert parse_retry_after("0") == 0.0 and parse_retry_after("0.0") == 0.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("99999999999999") == 1e9  # clamped: a billion seconds at most
    assert parse_retry_after("1000000000") == 1e9 and parse_retry_after("999999999") == 999999999
    for not_ascii in ("\u0663", "\uff11\uff12", "\u0663.5"):  # Arabic-Indic 3, full-width 12
        assert parse_retry_after(not_ascii, now) is None, not_ascii
    # "-0000" is RFC 5322's "no zone information": naive, taken as UTC (never a TypeError)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000", now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:30 +0200", now) == 30.0
    # without ``now``: the current time, aware (a date long past waits nothing)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000") == 0.0


def test_policy_bounds_are_inclusive() -> None:
    policy = RetryPolicy(max_server_wait=5.0, jitter=False)
    assert policy.delay_for(1, "GET", status(429, retry_after=5)) == 5
    assert policy.delay_for(1, "GET", status(429, retry_after=0.25)) == 0.25
    assert policy.delay_for(1, "GET", status(429, retry_after=0)) == 0
    assert policy.delay_for(1, "GET", status(503, retry_after=5)) == 5
    assert policy.delay_for(1, "GET", status(503, retry_after=5.01)) is None
    zero = RetryPolicy(base_delay=0, max_delay=0, max_server_wait=0)  # zero is allowed
    assert zero.backoff(3) == 0.0
    assert zero.delay_for(1, "GET", status(429, retry_after=0)) == 0


def test_jitter_scales_the_delay() -> None:
    assert RetryPolicy(base_delay=2.0, random=lambda: 0.0).backoff(2) == 2.0  # 4 s, halved
    assert RetryPolicy(base_delay=2.0, random=lambda: 0.5).backoff(1) == 1.5


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_attempts": 2.0}, TypeError, "max_attempts must be an int, got 2.0"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an int, got True"),
        ({"max_attempts": "3"}, TypeError, "max_attempts must be an int, got '3'"),
        ({"base_delay": -0.1}, ValueError, "base_delay must be a non-negative number"),
        ({"max_delay": float("nan")}, ValueError, "max_delay must be a non-negative number"),
        ({"max_server_wait": -1}, ValueError, "max_server_wait must be a non-negative number"),
    ],
)
def test_bad_policy_arguments_are_named(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message), str(caught.value)


@given(st.text(max_size=40))
def test_retry_after_never_raises(text: str) -> None:
    value = parse_retry_after(text)
    assert value is None or value >= 0


# -- error mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (429, RateLimitedError),
        (500, ServerError),
        (503, ServerError),
        (599, ServerError),
        (405, APIError),
        (410, APIError),
        (302, APIError),
    ],
)
def test_status_mapping(code: int, cls: type[APIError]) -> None:
    error = error_for_status(code, method="GET", url="https://x/v2/orders", body_excerpt="oops")
    assert type(error) is cls
    assert error.status_code == code
    assert error.method == "GET"
    assert error.url == "https://x/v2/orders"
    assert "GET https://x/v2/orders" in str(error)
    assert "oops" in str(error)


def test_rate_limited_carries_reset_at() -> None:
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    error = error_for_status(429, method="GET", url="u", reset_at=when)
    assert isinstance(error, RateLimitedError)
    assert error.reset_at == when


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.zigna.dk/v2", "https://api.zigna.dk/v2"),
        ("https://api.zigna.dk/v2/", "https://api.zigna.dk/v2"),
        ("HTTPS://API.Zigna.dk/v2", "https://api.zigna.dk/v2"),
        ("http://localhost:8000/v2", "http://localhost:8000/v2"),
        ("http://127.0.0.1:5/v2", "http://127.0.0.1:5/v2"),
        ("http://127.8.9.10/v2", "http://127.8.9.10/v2"),
        ("http://[::1]:8080/api", "http://[::1]:8080/api"),
        ("https://acme.ziik.io/api", "https://acme.ziik.io/api"),
    ],
)
def test_good_base_urls(given: str, expected: str) -> None:
    assert validate_base_url(given) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "http://api.zigna.dk/v2",
        "http://10.0.0.1/v2",
        "http://localhost.evil.com/v2",
        "ftp://api.zigna.dk",
        "api.zigna.dk/v2",
        "https://",
        "",
        "   ",
        "https://user:pw@api.zigna.dk/v2",
        "https://api.zigna.dk/v2?x=1",
        "https://api.zigna.dk:99999/v2",
        None,
        42,
    ],
)
def test_bad_base_urls_raise_configuration_error(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        validate_base_url(bad)


def test_bad_base_url_error_does_not_leak_user_info() -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_base_url("https://user:hunter22@api.zigna.dk/v2")
    assert "hunter22" not in str(info.value)


@pytest.mark.parametrize(
    ("base", "link", "expected"),
    [
        (
            "https://api.zigna.dk/v2",
            "/v2/orders?take=50&skip=50",
            "https://api.zigna.dk/v2/orders?take=50&skip=50",
        ),
        (
            "https://api.zigna.dk/v2",
            "https://api.zigna.dk/v2/orders?skip=5",
            "https://api.zigna.dk/v2/orders?skip=5",
        ),
        (
            "http://127.0.0.1:9/zigna/v2",
            "/v2/orders?skip=50",
            "http://127.0.0.1:9/zigna/v2/orders?skip=50",
        ),
        (
            "http://127.0.0.1:9/zigna/v2",
            "/zigna/v2/orders?skip=50",
            "http://127.0.0.1:9/zigna/v2/orders?skip=50",
        ),
        ("https://api.zigna.dk/v2", "orders?skip=50", "https://api.zigna.dk/v2/orders?skip=50"),
        ("https://a.ziik.io/api", "/api/units?page=2", "https://a.ziik.io/api/units?page=2"),
        (
            "https://a.ziik.io/api",
            "//a.ziik.io/api/units?page=2",
            "https://a.ziik.io/api/units?page=2",
        ),
        ("https://a.ziik.io", "/api/units?page=2", "https://a.ziik.io/api/units?page=2"),
        ("https://api.zigna.dk/v2", "/other/x", "https://api.zigna.dk/other/x"),
    ],
)
def test_resolve_link(base: str, link: str, expected: str) -> None:
    assert resolve_link(base, link) == expected


def test_same_origin() -> None:
    assert same_origin("https://a.dk/x", "https://A.dk:443/y")
    assert same_origin("http://127.0.0.1:80/x", "http://127.0.0.1/y")
    assert not same_origin("https://a.dk/x", "http://a.dk/x")
    assert not same_origin("https://a.dk/x", "https://b.dk/x")
    assert not same_origin("https://a.dk/x", "https://a.dk:8443/x")


LINK_BASE = "https://api.zigna.dk/v2"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet="/?&=.:[]@%#\\ \t\r\nab1", max_size=30),
        st.sampled_from(["//[bad/x", "http://[::1", "/v2/a\r\nb", " /v2/orders?skip=2\n"]),
    )
)
def test_resolve_link_refuses_only_what_is_no_link(link: str) -> None:
    """A `ValueError` exactly for a link with a control character inside, or one urllib
    cannot split (bad IPv6 brackets); any other text resolves to a string, and a relative
    link (no scheme, no ``//host``) stays on the base's origin."""
    text = link.strip()
    try:
        urlsplit(text)
        splits = True
    except ValueError:
        splits = False
    if any(ch < " " or ch == "\x7f" for ch in text) or not splits:
        with pytest.raises(ValueError, match="control character|IPv6|port"):
            resolve_link(LINK_BASE, link)
        return
    resolved = resolve_link(LINK_BASE, link)
    assert type(resolved) is str
    if not urlsplit(text).scheme and not text.startswith("//"):
        assert same_origin(resolved, LINK_BASE), resolved


def test_path_segment_encodes_and_refuses_traversal() -> None:
    assert path_segment("ab/../c", what="order_id") == "ab%2F..%2Fc"
    assert path_segment(12, what="order_id") == "12"
    assert path_segment("a b?#", what="order_id") == "a%20b%3F%23"
    for bad in ("", "  ", ".", ".."):
        with pytest.raises(ValueError, match="order_id"):
            path_segment(bad, what="order_id")
    for wrong in (None, True, 1.5, b"x"):
        with pytest.raises(TypeError, match="order_id"):
            path_segment(wrong, what="order_id")
