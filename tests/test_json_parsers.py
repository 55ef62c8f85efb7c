"""The converter's fast paths give exactly what the plain paths give.

* msgspec (the ``fast`` extra) parses when installed: every value it returns must equal, in
  type and in digits, what ``json.loads(parse_float=Decimal)`` returns, and every body it
  refuses must end with the standard parser's own result or error.
* The generated structure functions inline the usual date shape, finite decimals and lists
  of strings; the answers (and the failures) are those of the hooks they stand in for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

# The ``fast`` extra (in the test extra): without it this file fails to collect, never skipped.
import msgspec  # noqa: F401
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zigziik import DecodeError
from zigziik._convert import loads, parse_net_datetime, use_fast_json
from zigziik.zigna._convert import decode_json, structure
from zigziik.zigna.models import Order, OrderProducts


@pytest.fixture
def standard_parser() -> Iterator[None]:
    previous = use_fast_json(False)
    try:
        yield
    finally:
        use_fast_json(previous)


def _standard(body: bytes | str) -> tuple[str, Any]:
    try:
        return "ok", json.loads(body, parse_float=Decimal)
    except Exception as exc:
        return "error", type(exc)


def _ours(body: bytes | str) -> tuple[str, Any]:
    try:
        return "ok", loads(body)
    except Exception as exc:
        return "error", type(exc)


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    # repr() tells Decimal("2495.50") from Decimal("2495.5") and 1 from 1.0 from True.
    return a[0] == b[0] and repr(a[1]) == repr(b[1])


BODIES = [
    b'{"totalPrice": 2495.50}',
    b'{"totalPrice": 2495.5}',
    b"[1E5, 1e-7, -0.0, 0.1234567890123456789, 1e400, 1.5e-400]",
    b"[123456789012345678901234567890, -123456789012345678901234567890]",
    b"[18446744073709551615, 9223372036854775808, -9223372036854775809]",
    b"[NaN, Infinity, -Infinity]",
    b"\xef\xbb\xbf{}",
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'{"a": 1, "a": 2}',
    b'"\xff"',
    b'  {"a" : [1 , 2] }  \n',
    b"[1,]",
    b'{"a": 1}x',
    b'"a\x01b"',
    b'"\\u0000"',
    b'{"\\u00e6": "\\ud83d\\ude00"}',
    b"[" * 3000 + b"]" * 3000,
    b"",
    b"   ",
    b"null",
    b"true",
    b"01",
    b"1.",
    b".5",
    b"-",
    '{"å": "Nørrebrogade"}'.encode(),
    '{"å": "Nørrebrogade"}'.encode("utf-16"),
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_fast_parser_gives_what_the_standard_parser_gives(body: bytes) -> None:
    assert _same(_ours(body), _standard(body))


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_decode_errors_read_the_same_with_either_parser(body: bytes) -> None:
    def outcome() -> tuple[str, str]:
        try:
            return "ok", repr(decode_json(body, Any, method="GET", url="/x"))
        except DecodeError as exc:
            return "error", str(exc)

    fast = outcome()
    previous = use_fast_json(False)
    try:
        standard = outcome()
    finally:
        use_fast_json(previous)
    assert fast == standard


_numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.floats(allow_nan=False, allow_infinity=False),
)
_json_text = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(max_size=20), _numbers),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=30,
)


def _dump(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(_json_text)
def test_fast_parser_agrees_on_generated_documents(value: Any) -> None:
    body = _dump(value).encode()
    assert _same(_ours(body), _standard(body))


DATES = [
    "2016-01-31T12:00:00",
    "0001-01-01T00:00:00",
    "2016-13-01T00:00:00",
    "2016-02-30T00:00:00",
    "2016-01-31T24:00:00",
    "2016-01-31 12:00:00",
    "2016-01-31T12:00:00Z",
    "2016-01-31T12:00:00.5",
    "2016-01-31T12:00:00+01:00",
    "\uff12\uff10\uff11\uff16-01-31T12:00:00",  # full-width digits
    "2016-01-31T12:00",
    "2016-01-31",
    "garbage-not-a-date",
    "",
]


@pytest.mark.parametrize("text", DATES)
def test_inlined_dates_match_parse_net_datetime(text: str) -> None:
    try:
        expected: datetime | type[Exception] | None = parse_net_datetime(text)
    except ValueError:
        expected = DecodeError
    try:
        got: datetime | type[Exception] | None = structure({"created": text}, Order).created
    except DecodeError:
        got = DecodeError
    assert got == expected
    if isinstance(expected, datetime):
        assert isinstance(got, datetime)
        assert got.tzinfo == expected.tzinfo


@pytest.mark.parametrize("value", [5, 5.5, True, [], {}, ["2016-01-31T12:00:00"]])
def test_a_date_of_another_type_is_refused(value: Any) -> None:
    with pytest.raises(DecodeError):
        structure({"created": value}, Order)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("2495.50"), "2495.50"),
        (2495, "2495"),
        (2495.5, "2495.5"),
        (None, None),
    ],
)
def test_prices_keep_their_digits(value: Any, expected: str | None) -> None:
    price = structure({"totalPrice": value}, Order).total_price
    assert (str(price) if price is not None else None) == expected
    assert price is None or type(price) is Decimal


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), "2495.50", True, []])
def test_a_price_that_is_no_finite_number_is_refused(value: Any) -> None:
    with pytest.raises(DecodeError):
        structure({"totalPrice": value}, Order)


def test_string_lists_are_checked_item_by_item_and_copied() -> None:
    given_list = ["Photos", "Floor plan"]
    products = structure({"packageProducts": given_list, "extraProducts": None}, OrderProducts)
    assert products.package_products == given_list
    assert products.package_products is not given_list
    assert products.extra_products == []
    assert structure({"packageProducts": {}}, OrderProducts).package_products == []
    for bad in (["a", 1], ["a", None], "a", 5, {"a": 1}):
        with pytest.raises(DecodeError):
            structure({"packageProducts": bad}, OrderProducts)


def test_the_standard_parser_alone_gives_the_same_orders(standard_parser: None) -> None:
    body = json.dumps(
        {"totalPrice": 2495.5, "created": "2016-01-31T12:00:00", "statusID": 5}
    ).encode()
    standard = decode_json(body, Order, method="GET", url="/x")
    use_fast_json(True)
    assert decode_json(body, Order, method="GET", url="/x") == standard
