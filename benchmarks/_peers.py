"""The pydantic v2 models the listing peer validates with: the same fields as zigziik's.

Written as a pydantic user would: snake_case attributes with the API's camelCase aliases,
``Decimal`` prices, ``datetime`` stamps, every field optional, lists defaulting to empty.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class PPhotographer(_Model):
    name: str | None = None
    phone: str | None = None


class PSeller(_Model):
    name: str | None = None
    address1: str | None = None
    address2: str | None = None
    postal_code: str | None = Field(None, alias="postalCode")
    city: str | None = None
    phone1: str | None = None
    phone2: str | None = None
    email: str | None = None


class PProducts(_Model):
    package_name: str | None = Field(None, alias="packageName")
    package_products: list[str] = Field(default_factory=list, alias="packageProducts")
    extra_products: list[str] = Field(default_factory=list, alias="extraProducts")


class POrder(_Model):
    id: str | None = None
    floors: int | None = None
    created: datetime | None = None
    pictures_taken_date: datetime | None = Field(None, alias="picturesTakenDate")
    status: str | None = None
    status_id: int | None = Field(None, alias="statusID")
    total_price: Decimal | None = Field(None, alias="totalPrice")
    products: PProducts | None = None
    photographer: PPhotographer | None = None
    finished_date: datetime | None = Field(None, alias="finishedDate")
    realtor_wishes: str | None = Field(None, alias="realtorWishes")
    case_number: str | None = Field(None, alias="caseNumber")
    m2: int | None = None
    seller: PSeller | None = None
    home_type: str | None = Field(None, alias="homeType")
    booked_date: datetime | None = Field(None, alias="bookedDate")
    is_urgent: bool | None = Field(None, alias="isUrgent")


class PPageInfo(_Model):
    take: int | None = None
    skip: int | None = None
    next: str | None = None


class POrderPage(_Model):
    response: PPageInfo | None = None
    orders: list[POrder] = Field(default_factory=list)
