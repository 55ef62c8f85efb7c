"""Ziik models and quirk hooks: the reference's own example payloads, pure, no HTTP."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from zigziik import DecodeError
from zigziik.ziik import (
    UNSET,
    ClosedPeriod,
    Contact,
    Delivery,
    Feature,
    Invoicing,
    NewImage,
    NewUnit,
    OfficeHours,
    OpeningHours,
    ParentRef,
    Permissions,
    Unit,
    UnitAddress,
    UnitFile,
    UnitPatch,
    UnitType,
)
from zigziik.ziik._convert import structure, unstructure
from zigziik.ziik._hooks import (
    format_hours,
    format_timestamp,
    parse_hours,
    parse_timestamp,
    parse_weekday,
)

DATA = Path(__file__).parent / "data"


def load(name: str) -> Any:
    return json.loads((DATA / f"ziik_{name}.json").read_text(encoding="utf-8"))


def units(data: Any) -> list[Unit]:
    return structure(data, list[Unit])  # type: ignore[no-any-return]


# -- the reference's examples ---------------------------------------------------------------------


def test_reference_list_example_parses_completely() -> None:
    main, sweden = units(load("units_list"))
    assert type(main) is Unit
    assert type(main.id) is int and main.id == 12
    assert main.name == "Main Office"
    assert main.description == ""
    assert main.parent is None
    assert main.relationships == {} and type(main.relationships) is dict
    assert main.selectable is True
    assert type(main.unit_type) is int and main.unit_type == 1
    assert main.departments == []
    assert main.image == []
    assert main.url == "api/units/12"
    assert main.unit == UnitAddress(
        registration_number="12345678",
        vat_number="DK12345678-01",
        street="Nørre Voldgade 18, 1.",
        street_additional=None,
        postal_code="1358",
        city="Copenhagen K",
        phone="+45 3030 1808",
        email="info@ziik.dk",
    )
    assert main.delivery is not None
    assert main.delivery.use_unit_address is True
    assert main.delivery.contact == Contact(name=None, phone=None)
    assert main.delivery.contacts == []
    assert main.delivery.all_contacts == []
    assert main.invoicing == Invoicing(
        use_unit_address=True,
        registration_number="12345678",
        vat_number="DK12345678-01",
        street="Nørre Voldgade 18, 1.",
        postal_code="1358",
        city="Copenhagen K",
    )
    hours = main.opening_hours
    assert hours is not None
    assert hours.office_hours == [OfficeHours(d, time(9, 0), time(17, 0)) for d in range(1, 6)]
    first = hours.office_hours[0]
    assert type(first.day) is int and type(first.start) is time
    (closed,) = hours.closed
    assert closed.start == datetime(2016, 9, 5, 2, 30, tzinfo=timezone.utc)
    assert closed.end == datetime(2016, 9, 6, 4, 0, tzinfo=timezone.utc)
    assert closed.start is not None and closed.start.utcoffset() == timedelta(0)
    assert main.features == [
        Feature(175, "Firstline support", "api/units/features/175"),
        Feature(178, "Secondline support", "api/units/features/178"),
    ]
    assert main.permissions == Permissions(edit=True, delete=True)

    assert sweden.relationships == {}  # sent as []
    assert sweden.parent == ParentRef(
        id=1, name="Main office", level=0, leaf=False, url="api/units/1"
    )
    assert type(sweden.parent.id) is int and type(sweden.parent.leaf) is bool
    assert sweden.unit_type is None  # not in the example
    (image,) = sweden.image
    assert type(image) is UnitFile
    assert (image.id, image.name, image.mime, image.size, image.type) == (
        456,
        "office.jpg",
        "image/jpeg",
        18342,
        "image",
    )
    assert set(image.versions) == {"listing", "detail", "thumbnail"}
    assert sweden.delivery is not None
    assert sweden.delivery.contact is None
    teodor = Contact(name="Teodor Trygg", phone="+46 (0)111 22 33 44")
    assert sweden.delivery.contacts == [teodor]
    assert sweden.delivery.all_contacts == [teodor]
    assert sweden.opening_hours is not None and sweden.opening_hours.closed == []
    assert sweden.invoicing is not None and sweden.invoicing.use_unit_address is False


def test_reference_single_and_children_examples_parse() -> None:
    single = structure(load("unit_single"), Unit)
    assert single.id == 12 and single.relationships == {} and single.parent is None
    children = units(load("unit_children"))
    assert [c.id for c in children] == [12, 127]
    assert all(c.relationships == {} for c in children)  # sent as null
    assert all(c.parent is None and c.departments == [] for c in children)


def test_nested_departments_are_units() -> None:
    data = load("unit_single")
    data["departments"] = [dict(load("unit_single"), id=13, departments={})]
    unit = structure(data, Unit)
    (department,) = unit.departments
    assert type(department) is Unit and department.id == 13 and department.departments == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"unit_type": 0}, 0),
        ({"unit_type": 2}, 2),
        ({"unit_type": "department"}, "department"),
        ({"unit_type": "unit"}, "unit"),
        ({"unit_type": None}, None),
        ({}, None),
    ],
)
def test_unit_type_is_int_or_str_as_sent(payload: dict[str, Any], expected: object) -> None:
    value = structure(payload, Unit).unit_type
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("relationships", "expected"),
    [
        ({}, {}),
        ([], {}),
        (None, {}),
        ({"manager": {"id": 5}}, {"manager": {"id": 5}}),
        (["a", "b"], {"0": "a", "1": "b"}),
    ],
)
def test_relationships_shapes(relationships: Any, expected: dict[str, Any]) -> None:
    value = structure({"relationships": relationships}, Unit).relationships
    assert value == expected and type(value) is dict


def test_php_empty_arrays_for_objects() -> None:
    unit = structure(
        {
            "parent": [],
            "unit": [],
            "delivery": {"contact": [], "contacts": None},
            "invoicing": [],
            "opening_hours": [],
            "permissions": [],
            "image": [{"id": 1, "versions": []}],
            "features": {},
            "departments": None,
        },
        Unit,
    )
    assert unit.parent is None
    assert unit.unit == UnitAddress()
    assert unit.delivery == Delivery(contact=Contact())
    assert unit.invoicing == Invoicing()
    assert unit.opening_hours == OpeningHours()
    assert unit.permissions == Permissions()
    assert unit.image == [UnitFile(id=1)]
    assert unit.features == [] and unit.departments == []


def test_unknown_keys_are_ignored_and_missing_become_none() -> None:
    unit = structure({"id": 3, "brand_new_key": {"x": 1}}, Unit)
    assert unit == Unit(id=3)
    assert unit.opening_hours is None and unit.features == []


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"id": "12"}, "Unit.id"),
        ({"name": 5}, "Unit.name"),
        ({"selectable": "true"}, "Unit.selectable"),
        ({"unit_type": True}, "Unit.unit_type"),
        ({"unit_type": 1.5}, "Unit.unit_type"),
        ({"relationships": "none"}, "Unit.relationships"),
        ({"parent": [1]}, "Unit.parent"),
        ({"parent": {"id": "1"}}, "Unit.parent.id"),
        ({"features": "175"}, "Unit.features"),
        ({"departments": [{"id": "x"}]}, "Unit.departments"),
        ({"delivery": {"contacts": {"name": "x"}}}, "Unit.delivery.contacts"),
        ({"opening_hours": {"office_hours": [{"day": "8"}]}}, "office_hours"),
        ({"opening_hours": {"office_hours": [{"starthours": "abc"}]}}, "office_hours"),
        ({"opening_hours": {"office_hours": [{"endhours": "960"}]}}, "office_hours"),
        ({"opening_hours": {"closed": [{"start": "1473042600"}]}}, "closed"),
        ({"opening_hours": {"closed": [{"end": True}]}}, "closed"),
        ({"image": [{"versions": {"detail": 5}}]}, "Unit.image"),
    ],
)
def test_wrong_json_types_are_decode_errors(payload: dict[str, Any], where: str) -> None:
    with pytest.raises(DecodeError) as caught:
        structure(payload, Unit)
    assert where in str(caught.value)


def test_a_list_where_units_are_expected_is_an_error() -> None:
    with pytest.raises(DecodeError):
        units({"id": 1})


# -- the pure quirk conversions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("900", time(9, 0)),
        (900, time(9, 0)),
        ("1730", time(17, 30)),
        ("0930", time(9, 30)),
        ("0", time(0, 0)),
        (0, time(0, 0)),
        ("59", time(0, 59)),
        ("2359", time(23, 59)),
        ("2400", time.max),
        (2400, time.max),
    ],
)
def test_parse_hours(value: object, expected: time) -> None:
    assert parse_hours(value) == expected


@pytest.mark.parametrize(
    "value",
    ["abc", "960", "2401", "2500", "9:00", " 900", "", "-100", "12345", -1, 10000, 9.0, True, None],
)
def test_parse_hours_rejects_garbage(value: object) -> None:
    with pytest.raises(TypeError):
        parse_hours(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(time(9, 0), 900), (time(17, 30), 1730), (time(0, 0), 0), (time.max, 2400)],
)
def test_format_hours(value: time, expected: int) -> None:
    result = format_hours(value)
    assert result == expected and type(result) is int
    assert parse_hours(result) == value


def test_format_hours_rejects_seconds() -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        format_hours(time(9, 0, 30))


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("7", 7), (3, 3)])
def test_parse_weekday(value: object, expected: int) -> None:
    result = parse_weekday(value)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", ["0", "8", 0, 8, "01", "x", True, 1.0, None])
def test_parse_weekday_rejects(value: object) -> None:
    with pytest.raises(TypeError):
        parse_weekday(value)


def test_timestamps() -> None:
    stamp = parse_timestamp(1473042600)
    assert stamp == datetime(2016, 9, 5, 2, 30, tzinfo=timezone.utc)
    assert stamp.tzinfo is timezone.utc
    with_fraction = parse_timestamp(Decimal("1473042600.25"))
    assert with_fraction.microsecond == 250000
    assert format_timestamp(with_fraction) == 1473042600
    copenhagen = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2016, 9, 5, 4, 30, tzinfo=copenhagen)) == 1473042600
    assert type(format_timestamp(stamp)) is int
    for bad in ("1473042600", True, None, [1], 10**20):
        with pytest.raises(TypeError):
            parse_timestamp(bad)
    with pytest.raises(ValueError, match="naive"):
        format_timestamp(datetime(2016, 9, 5))


# -- request models -----------------------------------------------------------------------------


def _hours() -> OpeningHours:
    return OpeningHours(
        office_hours=[OfficeHours(1, time(9), time(17, 30)), OfficeHours(5, time(8), time.max)],
        closed=[
            ClosedPeriod(
                datetime(2016, 9, 5, 2, 30, tzinfo=timezone.utc),
                datetime(2016, 9, 6, 4, 0, tzinfo=timezone.utc),
            )
        ],
    )


def test_new_unit_minimal_body() -> None:
    body = unstructure(NewUnit("Aarhus", 12))
    assert body == {"name": "Aarhus", "parent": 12}


def test_new_unit_full_body_uses_api_forms() -> None:
    new = NewUnit(
        "Aarhus",
        12,
        description="Jylland",
        unit_type=UnitType.DEPARTMENT,
        unit=UnitAddress(city="Aarhus C", postal_code="8000"),
        delivery=Delivery(use_unit_address=True, contact=Contact(name="Ida")),
        invoicing=Invoicing(vat_number="DK1"),
        features=(175, 178),
        image=[NewImage.from_bytes("a.png", b"\x89PNG"), NewImage.youtube("https://y.t/e/x")],
        opening_hours=_hours(),
    )
    body = unstructure(new)
    assert body == {
        "name": "Aarhus",
        "parent": 12,
        "description": "Jylland",
        "unit_type": 2,
        "unit": {"postal_code": "8000", "city": "Aarhus C"},
        "delivery": {"use_unit_address": True, "contact": {"name": "Ida"}},
        "invoicing": {"vat_number": "DK1"},
        "features": [175, 178],
        "image": [
            {"type": "upload", "name": "a.png", "data": "iVBORw=="},
            {"type": "youtube", "name": "x", "data": "https://y.t/e/x"},
        ],
        "opening_hours": {
            "office_hours": [
                {"day": 1, "starthours": 900, "endhours": 1730},
                {"day": 5, "starthours": 800, "endhours": 2400},
            ],
            "closed": [{"start": 1473042600, "end": 1473134400}],
        },
    }
    assert type(body["unit_type"]) is int
    json.dumps(body)  # plain JSON values only


def test_a_parsed_unit_round_trips_into_a_request() -> None:
    main = units(load("units_list"))[0]
    body = unstructure(
        NewUnit("Copy", 12, opening_hours=main.opening_hours, delivery=main.delivery)
    )
    assert body["opening_hours"]["office_hours"][0] == {
        "day": 1,
        "starthours": 900,
        "endhours": 1700,
    }
    assert body["opening_hours"]["closed"] == [{"start": 1473042600, "end": 1473134400}]
    assert "contact" not in body["delivery"]  # an all-null contact is not sent


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("", 1), {}, ValueError),
        (("  ", 1), {}, ValueError),
        ((None, 1), {}, TypeError),
        (("x", "1"), {}, TypeError),
        (("x", True), {}, TypeError),
        (("x", None), {}, TypeError),
        (("x", -1), {}, ValueError),
        (("x", 1), {"unit_type": 1.0}, TypeError),
        (("x", 1), {"unit_type": False}, TypeError),
        (("x", 1), {"features": [1, "2"]}, TypeError),
        (("x", 1), {"features": "12"}, TypeError),
        (("x", 1), {"unit": {"city": "x"}}, TypeError),
        (("x", 1), {"image": ["a.png"]}, TypeError),
        (("x", 1), {"opening_hours": OpeningHours([OfficeHours(day=1)])}, ValueError),
    ],
)
def test_new_unit_validates(args: tuple[Any, ...], kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        NewUnit(*args, **kwargs)


def test_block_and_hours_validation() -> None:
    with pytest.raises(ValueError, match="weekday"):
        OfficeHours(day=0, start=time(9), end=time(17))
    with pytest.raises(ValueError, match="whole minutes"):
        OfficeHours(day=1, start=time(9, 0, 1), end=time(17))
    with pytest.raises(ValueError, match="timezone-aware"):
        ClosedPeriod(datetime(2020, 1, 1), datetime(2020, 1, 2))
    with pytest.raises(TypeError):
        UnitAddress(city=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Delivery(contacts=[{"name": "x"}])  # type: ignore[list-item]


def test_unit_patch_sends_only_what_was_passed() -> None:
    assert unstructure(UnitPatch()) == {}
    assert unstructure(UnitPatch(name="New name")) == {"name": "New name"}
    body = unstructure(UnitPatch(description=None, unit=None, parent=7, features=[]))
    assert body == {"description": None, "unit": None, "parent": 7, "features": []}
    assert unstructure(UnitPatch(opening_hours=_hours()))["opening_hours"]["office_hours"][1] == {
        "day": 5,
        "starthours": 800,
        "endhours": 2400,
    }
    # a block with one field set sends only that field: the rest is not wiped
    assert unstructure(UnitPatch(unit=UnitAddress(phone="+45 1"))) == {"unit": {"phone": "+45 1"}}
    assert unstructure(UnitPatch(opening_hours=OpeningHours(office_hours=[]))) == {
        "opening_hours": {}
    }


def test_unit_patch_fields_set_repr_and_validation() -> None:
    patch = UnitPatch(description=None, unit_type=UnitType.GROUP)
    assert patch.fields_set == ("description", "unit_type")
    assert repr(patch) == "UnitPatch(description=None, unit_type=1)"
    assert type(patch.unit_type) is int
    assert UnitPatch().name is UNSET and not UNSET
    with pytest.raises(ValueError, match="cannot be cleared"):
        UnitPatch(name=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        UnitPatch(name="")
    with pytest.raises(TypeError):
        UnitPatch(parent="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        UnitPatch(description=3)  # type: ignore[arg-type]


def test_new_image_builders(tmp_path: Path) -> None:
    path = tmp_path / "logo.jpg"
    path.write_bytes(b"\xff\xd8\xff")
    upload = NewImage.from_file(path)
    assert (upload.type, upload.name, upload.data) == ("upload", "logo.jpg", "/9j/")
    assert "/9j/" not in repr(upload)
    assert NewImage.vimeo("https://player.vimeo.com/video/76979871").name == "76979871"
    assert NewImage.youtube("https://www.youtube.com/embed/x", name="Intro").name == "Intro"
    with pytest.raises(ValueError, match="http"):
        NewImage.youtube("not a url")
    with pytest.raises(ValueError, match="type must be one of"):
        NewImage("gif", "a", "b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NewImage.from_bytes("a", "text")  # type: ignore[arg-type]


def test_all_contacts_merges_without_duplicates() -> None:
    ida = Contact(name="Ida", phone="1")
    jens = Contact(name="Jens")
    delivery = Delivery(contact=ida, contacts=[ida, jens])
    assert delivery.all_contacts == [ida, jens]
    assert Delivery(contact=Contact()).all_contacts == []
