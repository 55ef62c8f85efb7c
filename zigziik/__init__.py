"""zigziik: an async client for the Zigna v2 and Ziik APIs.

This module only re-exports the public names; see the README for usage.
"""

from ._extract import safe_extract
from ._version import __version__
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BudgetExhaustedError,
    ClientClosedError,
    ConfigurationError,
    DecodeError,
    IncompleteBodyError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnprocessableEntityError,
    ZigziikError,
)
from .pagination import AsyncPaginator
from .ratelimit import BudgetLedger, BudgetStore, DailyBudget, InMemoryBudgetStore, RateLimit
from .retry import RetryPolicy
from .zigna import (
    ContactForm,
    ExtraProduct,
    HousingType,
    NewOrder,
    NewOrderProducts,
    Order,
    OrderPictures,
    OrderProducts,
    OrderReceipt,
    OrderStatus,
    Package,
    Photographer,
    Picture,
    Seller,
    ZignaClient,
)

__all__ = [
    "APIError",
    "AsyncPaginator",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "BudgetLedger",
    "BudgetStore",
    "ClientClosedError",
    "ConfigurationError",
    "ContactForm",
    "DailyBudget",
    "DecodeError",
    "ExtraProduct",
    "HousingType",
    "InMemoryBudgetStore",
    "IncompleteBodyError",
    "IntegrityError",
    "NewOrder",
    "NewOrderProducts",
    "NotFoundError",
    "Order",
    "OrderPictures",
    "OrderProducts",
    "OrderReceipt",
    "OrderStatus",
    "Package",
    "PermissionDeniedError",
    "Photographer",
    "Picture",
    "RateLimit",
    "RateLimitedError",
    "RetryPolicy",
    "Seller",
    "ServerError",
    "TransportError",
    "UnprocessableEntityError",
    "ZignaClient",
    "ZigziikError",
    "__version__",
    "safe_extract",
]
