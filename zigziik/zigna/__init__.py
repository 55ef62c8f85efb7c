"""The Zigna v2 client and models."""

from .client import DEFAULT_BASE_URL, Orders, Pictures, ZignaClient
from .models import (
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
)

__all__ = [
    "DEFAULT_BASE_URL",
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
    "Orders",
    "Package",
    "Photographer",
    "Picture",
    "Pictures",
    "Seller",
    "ZignaClient",
]
