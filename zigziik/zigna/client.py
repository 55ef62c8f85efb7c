"""The Zigna v2 client: orders, pictures, catalogs, and the harvest."""

from __future__ import annotations

import builtins
import contextlib
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from .._auth import StaticHeaders
from .._checks import check_int
from .._client import BaseClient
from .._filenames import picture_file_name, sanitize_component
from .._request import FileUpload, TimeoutArg
from .._safedir import SafeFolder
from .._transport import Transport
from .._urls import path_segment, with_params
from ..download import (
    Progress,
    ReceivedFile,
    ensure_folder,
    existing_complete_file,
    picture_name_for,
    receive_to_file,
    stream_to_file,
)
from ..errors import BudgetStoreError, ConfigurationError, DecodeError
from ..pagination import AsyncPaginator, Page
from ..ratelimit import BudgetStore, DailyBudget, key_scope
from ..retry import RetryPolicy
from ._convert import converter, decode_json, unstructure
from ._settings import DEFAULT_BASE_URL, budget_settings, open_budget, zigna_settings
from .models import (
    ExtraProduct,
    HousingType,
    NewOrder,
    Order,
    OrderPage,
    OrderPictures,
    OrderReceipt,
    Package,
    Picture,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from .harvest import HarvestProgress, HarvestReport

__all__ = ["DEFAULT_BASE_URL", "Orders", "Pictures", "ZignaClient"]


class Orders:
    """``zigna.orders``: listing, reading and creating orders, and the catalogs for new ones."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _url(self, *segments: str) -> str:
        return self._transport.url("orders", *segments)

    def list(self, *, take: int = 50, skip: int = 0) -> AsyncPaginator[Order]:
        """Every order, ``take`` per request, starting at ``skip``; follows ``response.next``."""
        check_int("take", take, minimum=1)
        check_int("skip", skip, minimum=0)
        transport = self._transport

        async def fetch(url: str, params: Mapping[str, Any] | None) -> Page[Order]:
            body = await transport.request("GET", url, params=params)
            shown = with_params(url, params)
            page = decode_json(body, OrderPage, method="GET", url=shown)
            return Page(items=page.orders, next=page.response.next if page.response else None)

        return AsyncPaginator(
            fetch, self._url(), {"take": take, "skip": skip}, base_url=transport.base_url
        )

    async def get(self, order_id: str | int) -> Order:
        """One order by its id."""
        url = self._url(path_segment(order_id, what="order_id"))
        return await self._transport.request_json("GET", url, Order)  # type: ignore[no-any-return]

    async def create(self, order: NewOrder) -> OrderReceipt:
        """Place a new order. Never retried after it may have reached the server."""
        if not isinstance(order, NewOrder):
            raise TypeError(f"order must be a NewOrder, got {type(order).__name__}")
        return await self._transport.request_json(  # type: ignore[no-any-return]
            "POST", self._url(), OrderReceipt, json_body=unstructure(order)
        )

    async def packages(self) -> builtins.list[Package]:
        """The photo packages (ids for `NewOrderProducts.package_name`)."""
        return await self._transport.request_json(  # type: ignore[no-any-return]
            "GET", self._url("packages"), list[Package]
        )

    async def housing_types(self) -> builtins.list[HousingType]:
        """The home types (ids for `NewOrder.home_type`)."""
        return await self._transport.request_json(  # type: ignore[no-any-return]
            "GET", self._url("housingtypes"), list[HousingType]
        )

    async def extra_products(self) -> builtins.list[ExtraProduct]:
        """The extra products (ids for `NewOrderProducts.extra_products`)."""
        return await self._transport.request_json(  # type: ignore[no-any-return]
            "GET", self._url("extraproducts"), list[ExtraProduct]
        )


class Pictures:
    """``zigna.pictures``: list, download (one or all as a zip), upload and replace."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _url(self, order_id: str | int, *segments: str) -> str:
        return self._transport.url(
            "orders", path_segment(order_id, what="order_id"), "pictures", *segments
        )

    async def list(self, order_id: str | int) -> OrderPictures:
        """The order and its pictures."""
        return await self._transport.request_json(  # type: ignore[no-any-return]
            "GET", self._url(order_id), OrderPictures
        )

    async def download(
        self,
        order_id: str | int,
        picture: Picture | int,
        dest_dir: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Stream one picture into ``dest_dir`` and return its path.

        Given a `Picture`, the file is named from its id and original name, checked against
        its ``size``, and not fetched again when a complete copy is already there. Given a
        bare id, no listing call is made: the file is ``<id><ext>`` with the extension of the
        response's ``Content-Type``, checked against ``Content-Length``.
        """
        folder = ensure_folder(dest_dir)
        if isinstance(picture, Picture):
            if picture.picture_id is None:
                raise ValueError("the picture has no picture_id; cannot download it")
            picture_id: int | str = picture.picture_id
            original, size = picture.original_file_name, picture.size
            present = existing_complete_file(
                folder, picture_file_name(picture_id, original, None), size
            )
            if present is not None:
                return present
        else:
            picture_id = check_int("picture", picture, minimum=0)
            original, size = None, None
        received = await self._receive_into(
            order_id, picture_id, original, size, SafeFolder.open(folder), progress
        )
        return await received.finish()

    async def _receive_into(
        self,
        order_id: str | int,
        picture_id: int | str,
        original_file_name: str | None,
        size: int | None,
        folder: SafeFolder,
        progress: Progress | None = None,
        name: str | None = None,
    ) -> ReceivedFile:
        """Receive one picture towards an open ``folder``, with no check of what is there.

        The part of `download` the harvest uses: it has checked the disk already (and
        found the final ``name``, when the response's type cannot change it), and finishes
        the file after giving up its place among the requests in flight.
        """
        consume = receive_to_file(
            folder,
            picture_name_for(picture_id, original_file_name, name),
            expected_size=size,
            progress=progress,
        )
        url = self._url(order_id, path_segment(picture_id, what="picture_id"))
        received = await self._transport.send("GET", url, accept="*/*", consume=consume)
        if received is None:  # pragma: no cover - only zips may be empty
            raise DecodeError("the picture response had no body", method="GET", url=url)
        return received

    async def download_zip(
        self,
        order_id: str | int,
        dest_dir: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path | None:
        """All the order's pictures as ``<order_id>.zip`` in ``dest_dir``; ``None`` on 204."""
        folder = SafeFolder.open(ensure_folder(dest_dir))
        return await self._download_zip_into(order_id, folder, progress)

    async def _download_zip_into(
        self, order_id: str | int, folder: SafeFolder, progress: Progress | None
    ) -> Path | None:
        """`download_zip` into an open ``folder`` (the harvest's)."""
        name = sanitize_component(f"{order_id}.zip")
        consume = stream_to_file(
            folder, lambda _content_type: name, progress=progress, no_content_ok=True
        )
        return await self._transport.send(
            "GET", self._url(order_id, "zip"), accept="*/*", consume=consume
        )

    async def upload(self, order_id: str | int, path: str | os.PathLike[str]) -> None:
        """Add a picture to an order (multipart, streamed from the file)."""
        await self._upload(self._url(order_id), path)

    async def replace(
        self, order_id: str | int, picture_id: int, path: str | os.PathLike[str]
    ) -> None:
        """Replace an existing picture's file."""
        check_int("picture_id", picture_id, minimum=0)
        await self._upload(self._url(order_id, path_segment(picture_id, what="picture_id")), path)

    async def _upload(self, url: str, path: str | os.PathLike[str]) -> None:
        file = Path(path)
        if not file.is_file():  # noqa: ASYNC240 - one stat before any request
            raise FileNotFoundError(f"no file to upload at {file}")
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        await self._transport.request("POST", url, upload=FileUpload(file, content_type=kind))


class ZignaClient(BaseClient):
    """An async client for the Zigna v2 API.

    ``api_key`` falls back to ``$ZIGNA_API_KEY`` and must be a GUID; ``base_url`` to
    ``$ZIGNA_BASE_URL``, then ``https://api.zigna.dk/v2``. Every request counts
    against ``budget``: unless one is given, a fresh ``DailyBudget()`` of 2,000 calls (capped
    by ``$ZIGZIIK_DAILY_LIMIT`` if set) kept in the store ``$ZIGZIIK_BUDGET_STORE`` names
    (a URL; the client then owns the store and closes it), else in memory. A budget without
    a scope gets the key's (a short hash of it): every process that uses one store and one
    key shares one count. A caller-supplied ``http_client`` (an ``httpx.AsyncClient`` or an
    ``httpx2.AsyncClient``) is used as it is and never closed here; ``http_stack``
    (``"httpx"`` or ``"httpx2"``, default ``$ZIGZIIK_HTTP_STACK``, else httpx) chooses the
    stack of the client zigziik makes itself.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        budget: DailyBudget | None = None,
        http_client: httpx.AsyncClient | None = None,
        http_stack: str | None = None,
        timeout: TimeoutArg = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        settings = zigna_settings(os.environ, api_key=api_key, base_url=base_url)
        key = settings.api_key
        if budget is not None and not isinstance(budget, DailyBudget):
            raise ConfigurationError(f"budget must be a DailyBudget, got {type(budget).__name__}")
        self._owned_store: BudgetStore | None = None
        if budget is None:
            budget, self._owned_store = open_budget(budget_settings(os.environ))
        try:
            budget.bind_scope(key_scope(key))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._transport = Transport(
            base_url=settings.base_url,
            converter=converter,
            auth=StaticHeaders({"X-ApiKey": key}),
            http_client=http_client,
            http_stack=http_stack,
            timeout=timeout,
            retry=retry,
            budget=budget,
        )
        self.orders = Orders(self._transport)
        self.pictures = Pictures(self._transport)

    def __repr__(self) -> str:
        return (
            f"ZignaClient(base_url={self.base_url!r}, budget={self.budget!r}, "
            f"http_stack={self.http_stack!r})"
        )

    async def aclose(self) -> None:
        """Close the client (and the budget store it made from ``$ZIGZIIK_BUDGET_STORE``);
        a shared store it was handed gets the settlements of its calls at once."""
        try:
            await super().aclose()
        finally:
            store, self._owned_store = self._owned_store, None
            if store is not None:
                await store.aclose()
            elif self.budget is not None:
                with contextlib.suppress(BudgetStoreError):  # the leases expire by themselves
                    await self.budget.flush()

    def adopt_store(self, store: BudgetStore) -> None:
        """Close ``store`` when the client closes (for a store made only for this client)."""
        self._owned_store = store

    def harvest_source(self) -> _HarvestSource:
        """What `zigziik.zigna.harvest.harvest` needs from this client (a `HarvestSource`)."""
        return _HarvestSource(self)

    async def harvest(
        self,
        dest_dir: str | os.PathLike[str],
        *,
        order_ids: list[str] | None = None,
        concurrency: int = 8,
        strategy: Literal["auto", "pictures", "zip"] = "auto",
        extract: bool = False,
        progress: HarvestProgress | None = None,
        select: Callable[[Order], bool] | None = None,
        shard: tuple[int, int] | None = None,
        until_complete: bool = False,
        recheck: bool = False,
    ) -> HarvestReport:
        """Download every picture of every order (or of ``order_ids``) into ``dest_dir``.

        ``select`` keeps only the listed orders it accepts; ``shard=(k, n)`` only those of
        shard ``k`` of ``n`` (several processes, one folder); ``until_complete`` waits for
        the budget's reset and goes on until nothing is left; ``recheck`` lists the orders
        recorded complete again. See `zigziik.zigna.harvest` for what each costs in calls.
        """
        from .harvest import harvest

        return await harvest(
            self,
            dest_dir,
            order_ids=order_ids,
            concurrency=concurrency,
            strategy=strategy,
            extract=extract,
            progress=progress,
            select=select,
            shard=shard,
            until_complete=until_complete,
            recheck=recheck,
        )


class _HarvestSource:
    """A `zigziik.zigna.harvest.HarvestSource` over a `ZignaClient`."""

    def __init__(self, client: ZignaClient) -> None:
        self._client = client

    @property
    def budget(self) -> DailyBudget | None:
        return self._client.budget

    def orders(self, page_size: int, skip: int = 0) -> AsyncIterator[Order]:
        return self._client.orders.list(take=page_size, skip=skip).__aiter__()

    async def pictures(self, order_id: str) -> OrderPictures:
        return await self._client.pictures.list(order_id)

    async def receive_picture(
        self,
        order_id: str,
        picture_id: int,
        original_file_name: str | None,
        size: int | None,
        folder: SafeFolder,
        progress: Progress | None,
        name: str | None = None,
    ) -> ReceivedFile:
        return await self._client.pictures._receive_into(
            order_id, picture_id, original_file_name, size, folder, progress, name
        )

    async def download_zip(
        self, order_id: str, folder: SafeFolder, progress: Progress | None
    ) -> Path | None:
        return await self._client.pictures._download_zip_into(order_id, folder, progress)
