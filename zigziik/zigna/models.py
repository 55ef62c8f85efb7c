"""Zigna v2 models: frozen attrs classes with snake_case attributes.

Every field of a response model is optional: a key the server leaves out becomes ``None``
(or ``[]`` for lists). JSON keys are the camelCase forms, generated (see ``_convert``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import attrs

from .._checks import instance_of, is_int
from .._jsonstyle import json_model

__all__ = [
    "ContactForm",
    "ExtraProduct",
    "HousingType",
    "NewOrder",
    "NewOrderProducts",
    "Order",
    "OrderPictures",
    "OrderProducts",
    "OrderReceipt",
    "OrderStatus",
    "Package",
    "Photographer",
    "Picture",
    "Seller",
]


class OrderStatus(enum.IntEnum):
    """An order's ``statusID``. A value the enum does not know stays a plain ``int``."""

    NEW = 1
    BOOKED = 2
    PHOTOS_UPLOADED = 4
    COMPLETED = 5
    PENDING = 6
    SEASON_UPDATE = 50


class ContactForm(enum.IntEnum):
    """Who is contacted before the photographer comes (``contactForm``)."""

    KEY_FROM_REALTOR = 0
    """The key is collected from the realtor without contacting the seller."""
    CONTACT_SELLER = 1
    """The seller must be contacted."""
    NO_CONTACT = 2
    """Neither the realtor nor the seller is to be contacted."""


@json_model(camel_case=True)
@attrs.frozen
class Photographer:
    name: str | None = None
    phone: str | None = None


@json_model(camel_case=True, omit_none=True)
@attrs.frozen
class Seller:
    """The seller's contact details (used in orders and in `NewOrder`)."""

    name: str | None = None
    address1: str | None = None
    address2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    phone1: str | None = None
    phone2: str | None = None
    email: str | None = None


@json_model(camel_case=True)
@attrs.frozen
class OrderProducts:
    package_name: str | None = None
    package_products: list[str] = attrs.field(factory=list)
    extra_products: list[str] = attrs.field(factory=list)


@json_model(camel_case=True)
@attrs.frozen
class Order:
    """An order, as ``GET /orders`` and ``GET /orders/{id}`` return it."""

    id: str | None = None
    floors: int | None = None
    created: datetime | None = None
    pictures_taken_date: datetime | None = None
    status: str | None = None
    status_id: OrderStatus | int | None = None
    total_price: Decimal | None = None
    products: OrderProducts | None = None
    photographer: Photographer | None = None
    finished_date: datetime | None = None
    realtor_wishes: str | None = None
    case_number: str | None = None
    m2: int | None = None
    seller: Seller | None = None
    home_type: str | None = None
    booked_date: datetime | None = None
    is_urgent: bool | None = None


@json_model(camel_case=True)
@attrs.frozen
class Picture:
    """One picture of an order (``GET /orders/{id}/pictures``)."""

    picture_id: int | None = None
    original_file_name: str | None = None
    link: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None


@json_model(camel_case=True)
@attrs.frozen
class OrderPictures:
    order: Order | None = None
    pictures: list[Picture] = attrs.field(factory=list)


@json_model(camel_case=True)
@attrs.frozen
class PageInfo:
    """The ``response`` block of ``GET /orders``: the paging it applied and the next link."""

    take: int | None = None
    skip: int | None = None
    next: str | None = None


@json_model(camel_case=True)
@attrs.frozen
class OrderPage:
    """One page of ``GET /orders``."""

    response: PageInfo | None = None
    orders: list[Order] = attrs.field(factory=list)


@json_model(camel_case=True)
@attrs.frozen
class OrderReceipt:
    """The answer to `orders.create`."""

    status: str | None = None
    order_number: str | None = None
    created: datetime | None = None


@json_model(camel_case=True)
@attrs.frozen
class ExtraProduct:
    id: str | None = None
    name: str | None = None
    description: str | None = None


@json_model(camel_case=True)
@attrs.frozen
class Package:
    """A photo package; its ``id`` goes into `NewOrderProducts.package_name`."""

    id: str | None = None
    name: str | None = None
    extra_products: list[ExtraProduct] = attrs.field(factory=list)


@json_model(camel_case=True)
@attrs.frozen
class HousingType:
    """A home type; its ``id`` goes into `NewOrder.home_type`."""

    id: int | None = None
    name: str | None = None


def _str_list(value: object) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of strings, got {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"expected a list of strings, got an item {item!r}")
    return items


def _contact_form(value: object) -> ContactForm:
    if not is_int(value):
        raise TypeError(f"contact_form must be a ContactForm or 0/1/2, got {value!r}")
    try:
        return ContactForm(value)
    except ValueError:
        raise ValueError(f"contact_form must be 0, 1 or 2, got {value!r}") from None


@json_model(camel_case=True)
@attrs.frozen
class NewOrderProducts:
    """The products of a new order: a package id and extra product ids."""

    package_name: str = attrs.field(validator=instance_of(str))
    extra_products: list[str] = attrs.field(factory=list, converter=_str_list)


@json_model(camel_case=True, omit_none=True)
@attrs.frozen(kw_only=True)
class NewOrder:
    """The body of ``POST /orders``; sent with the API's camelCase keys.

    ``home_type`` is a `HousingType` id; ``contact_form`` a `ContactForm` (or 0/1/2).
    ``created`` is optional and left out when ``None``.
    """

    floors: int = attrs.field(validator=instance_of(int, minimum=0))
    products: NewOrderProducts = attrs.field(validator=instance_of(NewOrderProducts))
    realtor_wishes: str = attrs.field(default="", validator=instance_of(str))
    case_number: str = attrs.field(validator=instance_of(str))
    contact_form: ContactForm = attrs.field(converter=_contact_form)
    m2: int = attrs.field(validator=instance_of(int, minimum=0))
    seller: Seller = attrs.field(validator=instance_of(Seller))
    home_type: int = attrs.field(validator=instance_of(int))
    is_urgent: bool = attrs.field(default=False, validator=instance_of(bool))
    created: datetime | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(instance_of(datetime)),
    )
