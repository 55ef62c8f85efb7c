"""JSON -> Zigna models, without HTTP: the reference's shapes, its quirks, strictness."""

from __future__ import annotations

import enum
import json
import types
import typing
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zigziik import (
    ContactForm,
    DecodeError,
    NewOrder,
    NewOrderProducts,
    Order,
    OrderPictures,
    OrderStatus,
    Package,
    Seller,
)
from zigziik._convert import camel_case, parse_net_datetime
from zigziik.zigna._convert import decode_json, structure, unstructure

ORDER: dict[str, Any] = {
    "floors": 2,
    "created": "2016-05-03T10:15:00",
    "picturesTakenDate": "2016-05-10T09:00:00",
    "status": "Order is completed and photos are ready",
    "statusID": 5,
    "totalPrice": 2495.5,
    "products": {
        "packageName": "Premium",
        "packageProducts": ["Photos", "Floor plan"],
        "extraProducts": [],
    },
    "photographer": {"name": "Jens Jensen", "phone": "+45 1234 5678"},
    "finishedDate": "0001-01-01T00:00:00",
    "realtorWishes": "Sunny pictures, please",
    "id": "A1B2",
    "caseNumber": "C-77",
    "m2": 142,
    "seller": {
        "name": "Karen Hansen",
        "address1": "Nørre Voldgade 18",
        "address2": "",
        "postalCode": "1358",
        "city": "København K",
        "phone1": "+45 3030 1808",
        "phone2": "",
        "email": "karen@example.dk",
    },
    "homeType": "Villa",
    "bookedDate": "2016-05-04T08:00:00",
    "isUrgent": False,
}


def decode(body: object, target: Any) -> Any:
    return decode_json(json.dumps(body).encode(), target, method="GET", url="https://x/v2/y")


def test_camel_case_generation() -> None:
    assert camel_case("pictures_taken_date") == "picturesTakenDate"
    assert camel_case("status_id") == "statusID"
    assert camel_case("picture_id") == "pictureID"
    assert camel_case("id") == "id"
    assert camel_case("m2") == "m2"
    assert camel_case("address1") == "address1"


def test_full_order_parses_with_exact_types() -> None:
    order = decode(ORDER, Order)
    assert type(order) is Order
    assert order.id == "A1B2"
    assert type(order.floors) is int
    assert order.created == datetime(2016, 5, 3, 10, 15)
    assert order.created.tzinfo is None
    assert order.pictures_taken_date == datetime(2016, 5, 10, 9, 0)
    assert type(order.status_id) is OrderStatus
    assert order.status_id is OrderStatus.COMPLETED
    assert type(order.total_price) is Decimal
    assert order.total_price == Decimal("2495.5")
    assert order.finished_date is None  # .NET's DateTime.MinValue
    assert order.products is not None
    assert order.products.package_name == "Premium"
    assert order.products.package_products == ["Photos", "Floor plan"]
    assert order.photographer is not None and order.photographer.phone == "+45 1234 5678"
    assert order.seller is not None and order.seller.postal_code == "1358"
    assert order.case_number == "C-77"
    assert type(order.m2) is int
    assert order.home_type == "Villa"
    assert order.is_urgent is False
    assert order.realtor_wishes == "Sunny pictures, please"


def test_price_keeps_its_exact_decimal_digits() -> None:
    body = b'{"totalPrice": 1234567.895}'
    order = decode_json(body, Order, method="GET", url="u")
    assert order.total_price == Decimal("1234567.895")
    assert decode({"totalPrice": 2495}, Order).total_price == Decimal(2495)
    assert type(decode({"totalPrice": 2495}, Order).total_price) is Decimal


@pytest.mark.parametrize("status_id", [1, 2, 4, 5, 6, 50])
def test_known_statuses_are_enums(status_id: int) -> None:
    order = decode({"statusID": status_id}, Order)
    assert type(order.status_id) is OrderStatus
    assert int(order.status_id) == status_id


@pytest.mark.parametrize("status_id", [0, 3, 7, 99, -1])
def test_unknown_statuses_stay_plain_ints(status_id: int) -> None:
    order = decode({"statusID": status_id}, Order)
    assert type(order.status_id) is int
    assert order.status_id == status_id


def test_missing_keys_become_none_or_empty_lists() -> None:
    order = decode({}, Order)
    assert order == Order()
    assert order.id is None
    pictures = decode({"order": {}}, OrderPictures)
    assert pictures.pictures == []


@pytest.mark.parametrize("empty", [None, {}, []])
def test_null_or_empty_object_in_a_list_field_is_an_empty_list(empty: object) -> None:
    assert decode({"pictures": empty}, OrderPictures).pictures == []
    assert decode({"products": {"extraProducts": empty}}, Order).products.extra_products == []


def test_unknown_keys_are_ignored() -> None:
    order = decode({**ORDER, "brandNewField": {"x": 1}, "anotherOne": [1, 2]}, Order)
    assert order.id == "A1B2"


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"floors": "2"}, "Order.floors"),
        ({"floors": 2.5}, "Order.floors"),
        ({"floors": True}, "Order.floors"),
        ({"id": 42}, "Order.id"),
        ({"id": ["A"]}, "Order.id"),
        ({"isUrgent": "false"}, "Order.is_urgent"),
        ({"isUrgent": 0}, "Order.is_urgent"),
        ({"totalPrice": "2495.50"}, "Order.total_price"),
        ({"statusID": "5"}, "Order.status_id"),
        ({"statusID": 5.0}, "Order.status_id"),
        ({"created": 1473042600}, "Order.created"),
        ({"created": "yesterday"}, "Order.created"),
        ({"created": "2016-13-01T00:00:00"}, "Order.created"),
        ({"seller": "Karen"}, "Order.seller"),
        ({"seller": []}, "Order.seller"),
        ({"products": {"packageProducts": "Photos"}}, "package_products"),
        ({"products": {"packageProducts": [1, 2]}}, "package_products"),
    ],
)
def test_wrong_types_are_decode_errors_naming_the_field(patch: dict[str, Any], where: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode({**ORDER, **patch}, Order)
    message = str(info.value)
    assert where in message
    assert "GET https://x/v2/y" in message
    assert info.value.method == "GET"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b'{"id": "A"',
        b"\xff\xfe\x00",
        b"[1, 2]",
        b"null",
        b'"text"',
        b"1e999999",
    ],
)
def test_bodies_that_are_not_an_order_raise_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="GET u"):
        decode_json(body, Order, method="GET", url="u")


def test_deep_nesting_is_a_decode_error_not_a_recursion_error() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(DecodeError):
        decode_json(body, Order, method="GET", url="u")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(list(ORDER) + ["x", "pictures", "order", "pictureID"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def conforms(value: object, hint: Any) -> bool:
    """Whether ``value`` is exactly of the type ``hint`` says (no bool for an int, no float
    for a Decimal, no str for a datetime), through lists, unions and nested models."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arm) for arm in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return type(value) is list and all(conforms(v, item) for v in value)
    if hint is type(None):
        return value is None
    if attrs.has(hint):
        if type(value) is not hint:
            return False
        hints = typing.get_type_hints(hint)
        return all(conforms(getattr(value, f.name), hints[f.name]) for f in attrs.fields(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return type(value) is hint
    return type(value) is hint


@given(json_values)
def test_any_json_gives_a_model_or_a_decode_error(value: object) -> None:
    """Whatever the JSON, the answer is a model whose every field has its declared type
    (an absurd value is refused, not let through), or a `DecodeError` naming the call; a
    value that is no JSON object cannot be a model."""
    for target in (Order, OrderPictures, list[Package]):
        try:
            result = structure(value, target, method="GET", url="u")
        except DecodeError as exc:
            assert str(exc).startswith("GET u: "), str(exc)  # noqa: PT017
            continue
        assert conforms(result, target), (value, result)
        if target == list[Package]:  # a bare list, an envelope, or null for none
            assert value is None or type(value) in (list, dict), (value, result)
        else:
            assert type(value) is dict, (value, result)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-05-03T10:15:00", datetime(2016, 5, 3, 10, 15)),
        ("2016-05-03T10:15:00.1234567", datetime(2016, 5, 3, 10, 15, 0, 123456)),
        ("2016-05-03T10:15", datetime(2016, 5, 3, 10, 15)),
        ("2016-05-03", datetime(2016, 5, 3)),
        ("2016-05-03T10:15:00Z", datetime(2016, 5, 3, 10, 15, tzinfo=timezone.utc)),
        (
            "2016-05-03T10:15:00+02:00",
            datetime(2016, 5, 3, 10, 15, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("0001-01-01T00:00:00", None),
        ("0001-01-01T00:00:00Z", None),
    ],
)
def test_net_datetimes(text: str, expected: datetime | None) -> None:
    assert parse_net_datetime(text) == expected


def test_new_order_serialises_with_camel_case_keys() -> None:
    order = NewOrder(
        floors=2,
        products=NewOrderProducts("P1", ["E1", "E2"]),
        realtor_wishes="Morning light",
        case_number="C-1",
        contact_form=ContactForm.CONTACT_SELLER,
        m2=120,
        seller=Seller(name="Karen", postal_code="8000", city="Aarhus C"),
        home_type=3,
        is_urgent=True,
        created=datetime(2026, 11, 22, 10, 30),
    )
    assert unstructure(order) == {
        "floors": 2,
        "products": {"packageName": "P1", "extraProducts": ["E1", "E2"]},
        "realtorWishes": "Morning light",
        "caseNumber": "C-1",
        "contactForm": 1,
        "m2": 120,
        "seller": {"name": "Karen", "postalCode": "8000", "city": "Aarhus C"},
        "homeType": 3,
        "isUrgent": True,
        "created": "2026-11-22T10:30:00",
    }
    assert type(unstructure(order)["contactForm"]) is int


def test_new_order_without_created_leaves_it_out() -> None:
    order = NewOrder(
        floors=1,
        products=NewOrderProducts("P1"),
        case_number="C",
        contact_form=0,
        m2=50,
        seller=Seller(),
        home_type=1,
    )
    assert "created" not in unstructure(order)
    assert order.contact_form is ContactForm.KEY_FROM_REALTOR


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("floors", "2", "floors must be int"),
        ("floors", -1, "floors must be at least 0"),
        ("m2", True, "m2 must be int"),
        ("home_type", "Villa", "home_type must be int"),
        ("contact_form", 3, "contact_form must be 0, 1 or 2"),
        ("contact_form", "1", "contact_form must be"),
        ("is_urgent", 1, "is_urgent must be bool"),
        ("case_number", 7, "case_number must be str"),
        ("seller", {"name": "x"}, "seller must be Seller"),
        ("created", "2026-01-01", "created must be datetime"),
    ],
)
def test_bad_new_order_fields_are_named(field: str, value: object, message: str) -> None:
    fields: dict[str, Any] = {
        "floors": 1,
        "products": NewOrderProducts("P1"),
        "case_number": "C",
        "contact_form": 0,
        "m2": 50,
        "seller": Seller(),
        "home_type": 1,
    }
    fields[field] = value
    with pytest.raises((TypeError, ValueError), match=message):
        NewOrder(**fields)


def test_new_order_products_validate() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        NewOrderProducts("P1", "E1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="package_name"):
        NewOrderProducts(5)  # type: ignore[arg-type]


def test_models_are_frozen() -> None:
    order = decode(ORDER, Order)
    with pytest.raises(AttributeError):
        order.id = "x"  # type: ignore[misc]
