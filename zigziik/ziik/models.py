"""Ziik models: frozen attrs classes named after the API's snake_case keys.

Response models: every field is optional (a key the server leaves out becomes ``None``, or
``[]``/``{}`` for lists and maps), unknown keys are ignored, and PHP's empty array ``[]`` is
accepted wherever an object is expected. The documented quirks (weekdays and hours as strings,
closed periods as unix timestamps, ``relationships`` as ``{}``/``[]``/``null``) are converted
by `zigziik.ziik._hooks`; any other wrong JSON type is a `DecodeError`.

Request models (`NewUnit`, `UnitPatch`, `NewImage`, and the blocks they contain) validate their
arguments when built and serialise back to the API's forms: hours as 900-style integers,
closed periods as unix seconds, weekdays as integers.
"""

from __future__ import annotations

import base64
import enum
import os
from collections.abc import Iterable
from datetime import datetime, time
from pathlib import Path
from typing import Any, Final, Literal, NewType, TypeVar

import attrs

from .._checks import describe, instance_of, is_int
from .._jsonstyle import json_model

__all__ = [
    "UNSET",
    "ClosedPeriod",
    "Contact",
    "Delivery",
    "Feature",
    "FileVersions",
    "Invoicing",
    "NewImage",
    "NewUnit",
    "OfficeHours",
    "OpeningHours",
    "ParentRef",
    "Permissions",
    "Relationships",
    "Unit",
    "UnitAddress",
    "UnitFile",
    "UnitPatch",
    "UnitType",
    "Unset",
]

T = TypeVar("T")

Relationships = NewType("Relationships", dict[str, Any])
"""A unit's ``relationships``: a plain ``dict``. ``{}``, ``[]`` and ``null`` all become ``{}``;
a non-empty JSON list (a PHP array with keys 0..n-1) becomes ``{"0": ..., "1": ...}``."""

FileVersions = NewType("FileVersions", dict[str, str])
"""Image style name -> URL (``listing``, ``detail``, ``thumbnail``, ...). PHP's ``[]`` is ``{}``
and a style whose URL is ``null`` is left out."""


class Unset(enum.Enum):
    """The type of `UNSET`: "this field was not given, do not send it"."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset.UNSET
"""The default of every `UnitPatch` field: the field is left out of the request."""


class UnitType(enum.IntEnum):
    """The reference's ``unit_type`` numbers, for building requests.

    Responses keep ``unit_type`` as the plain ``int`` or ``str`` the server sent (newer
    servers send ``"unit"`` or ``"department"``).
    """

    NORMAL = 0
    GROUP = 1
    DEPARTMENT = 2


# -- validators ----------------------------------------------------------------------------------


def _optional(kind: type | tuple[type, ...], what: str) -> Any:
    """A validator: ``None`` or an instance of ``kind`` (a bool is never an int)."""
    return instance_of(kind, what, optional=True)


def _check_weekday(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not is_int(value) or not 1 <= value <= 7:
        raise ValueError(
            f"{attribute.name} must be a weekday 1 (Monday) to 7 (Sunday), got {describe(value)}"
        )


def _check_hours(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, time):
        raise TypeError(f"{attribute.name} must be a datetime.time, got {describe(value)}")
    if value.tzinfo is not None:
        raise ValueError(f"{attribute.name} must be a time without a timezone, got {value!r}")
    if value != time.max and (value.second or value.microsecond):
        raise ValueError(
            f"{attribute.name} must be whole minutes (the API sends HHMM), got {value!r}; "
            "use datetime.time.max for 24:00"
        )


def _check_aware(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise TypeError(f"{attribute.name} must be a datetime, got {describe(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{attribute.name} must be timezone-aware (the API sends unix timestamps), "
            f"got {value!r}"
        )


def _list_of(kind: type, what: str) -> Any:
    """A converter: any iterable (not a string or mapping) of ``kind`` -> a new list."""

    def convert(value: Any) -> Any:
        if value is None or isinstance(value, Unset):
            return value
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
            raise TypeError(f"expected a list of {what}, got {describe(value)}")
        items = list(value)
        for item in items:
            if (isinstance(item, bool) and kind is not bool) or not isinstance(item, kind):
                raise TypeError(f"expected a list of {what}, got an item {describe(item)}")
        return items

    return convert


def _contacts(value: Iterable[Contact]) -> list[Contact]:
    return _list_of(Contact, "Contact objects")(value)  # type: ignore[no-any-return]


def _office_hours(value: Iterable[OfficeHours]) -> list[OfficeHours]:
    return _list_of(OfficeHours, "OfficeHours")(value)  # type: ignore[no-any-return]


def _closed_periods(value: Iterable[ClosedPeriod]) -> list[ClosedPeriod]:
    return _list_of(ClosedPeriod, "ClosedPeriod")(value)  # type: ignore[no-any-return]


def _feature_ids(value: Iterable[int] | None) -> list[int] | None:
    return _list_of(int, "feature ids (int)")(value)  # type: ignore[no-any-return]


def _images(value: Iterable[NewImage] | None) -> list[NewImage] | None:
    return _list_of(NewImage, "NewImage")(value)  # type: ignore[no-any-return]


def _patch_feature_ids(value: Iterable[int] | Unset | None) -> list[int] | Unset | None:
    return _list_of(int, "feature ids (int)")(value)  # type: ignore[no-any-return]


def _patch_images(value: Iterable[NewImage] | Unset | None) -> list[NewImage] | Unset | None:
    return _list_of(NewImage, "NewImage")(value)  # type: ignore[no-any-return]


def _str() -> Any:
    return attrs.field(default=None, validator=_optional(str, "a str"))


def _bool() -> Any:
    return attrs.field(default=None, validator=_optional(bool, "a bool"))


# -- response models (most are also the blocks of request bodies) -------------------------------


@json_model(php_arrays=True)
@attrs.frozen
class ParentRef:
    """The ``parent`` of a unit: a reference, not the whole unit."""

    id: int | None = None
    name: str | None = None
    level: int | None = None
    leaf: bool | None = None
    url: str | None = None


@json_model(php_arrays=True)
@attrs.frozen
class Feature:
    """A unit feature (``features``); `NewUnit.features` takes their ids."""

    id: int | None = None
    name: str | None = None
    url: str | None = None


@json_model(php_arrays=True)
@attrs.frozen
class UnitFile:
    """A file attached to a unit (its ``image``), with URLs of its scaled ``versions``."""

    id: int | None = None
    name: str | None = None
    mime: str | None = None
    size: int | None = None
    type: str | None = None
    source: str | None = None
    versions: FileVersions = attrs.field(factory=lambda: FileVersions({}))


@json_model(php_arrays=True, omit_none=True)
@attrs.frozen
class Contact:
    """A delivery contact."""

    name: str | None = _str()
    phone: str | None = _str()


@json_model(php_arrays=True, omit_none=True)
@attrs.frozen
class UnitAddress:
    """The ``unit`` block: the unit's company and address details.

    In a request, fields left as ``None`` are not sent (send ``""`` to clear one).
    """

    registration_number: str | None = _str()
    vat_number: str | None = _str()
    street: str | None = _str()
    street_additional: str | None = _str()
    postal_code: str | None = _str()
    city: str | None = _str()
    phone: str | None = _str()
    email: str | None = _str()


@json_model(php_arrays=True, omit_none=True)
@attrs.frozen
class Delivery:
    """The ``delivery`` block.

    Servers send one ``contact`` object, a ``contacts`` list, or both; `all_contacts` merges
    them. In a request, ``None`` fields and an empty ``contacts`` list are not sent.
    """

    use_unit_address: bool | None = _bool()
    company: str | None = _str()
    street: str | None = _str()
    street_additional: str | None = _str()
    postal_code: str | None = _str()
    city: str | None = _str()
    phone: str | None = _str()
    contact: Contact | None = attrs.field(default=None, validator=_optional(Contact, "a Contact"))
    contacts: list[Contact] = attrs.field(factory=list, converter=_contacts)
    comments: str | None = _str()

    @property
    def all_contacts(self) -> list[Contact]:
        """``contact`` (when it has a name or phone) followed by ``contacts``, no duplicates."""
        merged: list[Contact] = []
        for contact in ([self.contact] if self.contact is not None else []) + self.contacts:
            if (contact.name is not None or contact.phone is not None) and contact not in merged:
                merged.append(contact)
        return merged


@json_model(php_arrays=True, omit_none=True)
@attrs.frozen
class Invoicing:
    """The ``invoicing`` block. In a request, ``None`` fields are not sent."""

    use_unit_address: bool | None = _bool()
    registration_number: str | None = _str()
    vat_number: str | None = _str()
    company: str | None = _str()
    street: str | None = _str()
    street_additional: str | None = _str()
    postal_code: str | None = _str()
    city: str | None = _str()
    comments: str | None = _str()


@json_model(php_arrays=True)
@attrs.frozen
class OfficeHours:
    """Opening hours on one weekday (JSON ``day``, ``starthours``, ``endhours``).

    ``day`` is 1 (Monday) to 7 (Sunday). The API's ``"900"``/``"1730"`` become
    ``time(9, 0)``/``time(17, 30)``; ``"2400"`` (closing at midnight) is ``time.max``, which is
    sent back as ``2400``. Hours go back to the API as integers (``900``).
    """

    day: int | None = attrs.field(default=None, validator=_check_weekday)
    start: time | None = attrs.field(default=None, validator=_check_hours)
    end: time | None = attrs.field(default=None, validator=_check_hours)


@json_model(php_arrays=True)
@attrs.frozen
class ClosedPeriod:
    """A period when the unit is closed: aware datetimes (UTC when parsed), unix seconds in JSON."""

    start: datetime | None = attrs.field(default=None, validator=_check_aware)
    end: datetime | None = attrs.field(default=None, validator=_check_aware)


@json_model(php_arrays=True, omit_none=True)
@attrs.frozen
class OpeningHours:
    """The ``opening_hours`` block.

    In a request, an empty list is not sent (so a patch of ``office_hours`` alone leaves the
    closed periods alone); to clear all opening hours, patch ``opening_hours=None``.
    """

    office_hours: list[OfficeHours] = attrs.field(factory=list, converter=_office_hours)
    closed: list[ClosedPeriod] = attrs.field(factory=list, converter=_closed_periods)


@json_model(php_arrays=True)
@attrs.frozen
class Permissions:
    """What the caller may do with the unit."""

    edit: bool | None = None
    delete: bool | None = None


@json_model(php_arrays=True)
@attrs.frozen
class Unit:
    """A unit (office, group, department), as ``GET /units`` and ``GET /units/{id}`` return it.

    ``unit_type`` is the ``int`` (0 normal, 1 group, 2 department) or ``str`` (``"unit"``,
    ``"department"``) the server sent. ``departments`` are nested units. ``parent`` is ``None``
    for a top-level unit.
    """

    id: int | None = None
    name: str | None = None
    description: str | None = None
    parent: ParentRef | None = None
    unit_type: int | str | None = None
    selectable: bool | None = None
    departments: list[Unit] = attrs.field(factory=list)
    features: list[Feature] = attrs.field(factory=list)
    image: list[UnitFile] = attrs.field(factory=list)
    relationships: Relationships = attrs.field(factory=lambda: Relationships({}))
    opening_hours: OpeningHours | None = None
    unit: UnitAddress | None = None
    delivery: Delivery | None = None
    invoicing: Invoicing | None = None
    permissions: Permissions | None = None
    url: str | None = None


# -- request models ------------------------------------------------------------------------------

ImageKind = Literal["upload", "youtube", "vimeo"]
_IMAGE_KINDS: tuple[str, ...] = ("upload", "youtube", "vimeo")


def _check_image_kind(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in _IMAGE_KINDS:
        raise ValueError(f"type must be one of {', '.join(_IMAGE_KINDS)}, got {value!r}")


def _non_empty_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, got {describe(value)}")
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen
class NewImage:
    """One entry of an ``image`` list: an upload (base64 file content) or a video embed URL.

    Build one with `NewImage.from_file`, `NewImage.from_bytes`, `NewImage.youtube` or
    `NewImage.vimeo`. The base64 data is left out of ``repr()``.
    """

    type: ImageKind = attrs.field(validator=_check_image_kind)
    name: str = attrs.field(validator=_non_empty_str)
    data: str = attrs.field(validator=_non_empty_str, repr=False)

    @classmethod
    def from_bytes(cls, name: str, content: bytes) -> NewImage:
        """An upload named ``name`` with this content."""
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"content must be bytes, got {type(content).__name__}")
        return cls("upload", name, base64.b64encode(bytes(content)).decode("ascii"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, name: str | None = None) -> NewImage:
        """An upload of a local file, named after it (reads the file: blocking I/O)."""
        file = Path(path)
        return cls.from_bytes(name if name is not None else file.name, file.read_bytes())

    @classmethod
    def youtube(cls, url: str, *, name: str | None = None) -> NewImage:
        """A YouTube embed URL."""
        return cls("youtube", name if name is not None else _embed_name(url), url)

    @classmethod
    def vimeo(cls, url: str, *, name: str | None = None) -> NewImage:
        """A Vimeo embed URL."""
        return cls("vimeo", name if name is not None else _embed_name(url), url)


def _embed_name(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"the embed URL must be a non-empty str, got {url!r}")
    if not url.lower().startswith(("https://", "http://")):
        raise ValueError(f"the embed URL must be an http(s) URL, got {url!r}")
    return url.rstrip("/").rsplit("/", 1)[-1] or "video"


def _to_unit_type(value: int | str | None) -> int | str | None:
    """``UnitType.GROUP`` -> ``1`` (a plain int), so the body holds plain JSON values."""
    if isinstance(value, UnitType):
        return int(value)
    return value


def _to_patch_unit_type(value: int | str | Unset | None) -> int | str | Unset | None:
    """`_to_unit_type` for `UnitPatch`, where `UNSET` means "not sent"."""
    if isinstance(value, UnitType):
        return int(value)
    return value


def _check_unit_type(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, Unset):
        return
    if is_int(value):
        return
    if isinstance(value, str) and value.strip():
        return
    raise TypeError(
        f"unit_type must be an int (0 normal, 1 group, 2 department) or a non-empty str, "
        f"got {describe(value)}"
    )


def _check_opening_hours(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, Unset):
        return
    if not isinstance(value, OpeningHours):
        raise TypeError(f"opening_hours must be an OpeningHours, got {describe(value)}")
    for hours in value.office_hours:
        if hours.day is None or hours.start is None or hours.end is None:
            raise ValueError(f"every OfficeHours sent needs day, start and end; got {hours!r}")
    for period in value.closed:
        if period.start is None or period.end is None:
            raise ValueError(f"every ClosedPeriod sent needs start and end; got {period!r}")


def _field_validator(kind: type | tuple[type, ...], what: str) -> Any:
    inner = _optional(kind, what)

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, Unset):
            inner(instance, attribute, value)

    return check


def _check_parent(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_int(value):
        raise TypeError(f"parent must be an int unit id, got {describe(value)}")
    if value < 0:
        raise ValueError(f"parent must be a unit id (>= 0), got {value}")


def _check_patch_parent(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Unset):
        _check_parent(instance, attribute, value)


def _check_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, Unset):
        return
    if value is None:
        raise ValueError("name cannot be cleared (None); leave it out to keep it")
    _non_empty_str(instance, attribute, value)


@json_model(omit_none=True)
@attrs.frozen
class NewUnit:
    """The body of ``POST /units`` (`ziik.units.create`). Fields left as ``None`` are not sent.

    ``features`` are `Feature` ids; ``image`` a list of `NewImage`; ``unit_type`` an int (see
    `UnitType`) or the newer string form.
    """

    name: str = attrs.field(validator=_non_empty_str)
    parent: int = attrs.field(validator=_check_parent)
    description: str | None = attrs.field(
        default=None, kw_only=True, validator=_optional(str, "a str")
    )
    unit_type: int | str | None = attrs.field(
        default=None, kw_only=True, converter=_to_unit_type, validator=_check_unit_type
    )
    unit: UnitAddress | None = attrs.field(
        default=None, kw_only=True, validator=_optional(UnitAddress, "a UnitAddress")
    )
    delivery: Delivery | None = attrs.field(
        default=None, kw_only=True, validator=_optional(Delivery, "a Delivery")
    )
    invoicing: Invoicing | None = attrs.field(
        default=None, kw_only=True, validator=_optional(Invoicing, "an Invoicing")
    )
    features: list[int] | None = attrs.field(default=None, kw_only=True, converter=_feature_ids)
    image: list[NewImage] | None = attrs.field(default=None, kw_only=True, converter=_images)
    opening_hours: OpeningHours | None = attrs.field(
        default=None, kw_only=True, validator=_check_opening_hours
    )


@attrs.frozen(kw_only=True, repr=False)
class UnitPatch:
    """The body of ``PATCH /units/{id}`` (`ziik.units.update`).

    Only the fields passed are sent. A field passed as ``None`` is sent as JSON ``null`` (to
    clear it on the server); a field not passed (`UNSET`) is never sent. ``name`` cannot be
    cleared.
    """

    name: str | Unset = attrs.field(default=UNSET, validator=_check_name)
    parent: int | Unset | None = attrs.field(default=UNSET, validator=_check_patch_parent)
    description: str | Unset | None = attrs.field(
        default=UNSET, validator=_field_validator(str, "a str")
    )
    unit_type: int | str | Unset | None = attrs.field(
        default=UNSET, converter=_to_patch_unit_type, validator=_check_unit_type
    )
    unit: UnitAddress | Unset | None = attrs.field(
        default=UNSET, validator=_field_validator(UnitAddress, "a UnitAddress")
    )
    delivery: Delivery | Unset | None = attrs.field(
        default=UNSET, validator=_field_validator(Delivery, "a Delivery")
    )
    invoicing: Invoicing | Unset | None = attrs.field(
        default=UNSET, validator=_field_validator(Invoicing, "an Invoicing")
    )
    features: list[int] | Unset | None = attrs.field(default=UNSET, converter=_patch_feature_ids)
    image: list[NewImage] | Unset | None = attrs.field(default=UNSET, converter=_patch_images)
    opening_hours: OpeningHours | Unset | None = attrs.field(
        default=UNSET, validator=_check_opening_hours
    )

    @property
    def fields_set(self) -> tuple[str, ...]:
        """The names of the fields that will be sent, in declaration order."""
        return tuple(
            f.name for f in attrs.fields(UnitPatch) if not isinstance(getattr(self, f.name), Unset)
        )

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.fields_set)
        return f"UnitPatch({shown})"
