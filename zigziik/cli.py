"""The ``zigziik`` command (also ``python -m zigziik``).

Subcommands: ``harvest``, ``orders list``, ``orders show``, ``budget``, ``units tree`` (Ziik)
and ``demo`` (a real harvest against the embedded fake Zigna server). Configuration comes from
flags or the environment (``ZIGNA_API_KEY``, ``ZIGNA_BASE_URL``, ``ZIGZIIK_BUDGET_STORE``,
``ZIIK_BASE_URL``, ``ZIIK_TOKEN``, ``ZIIK_USERNAME``/``ZIIK_PASSWORD``). The Zigna commands
count their calls in one budget shared by every run: a SQLite file in the user cache folder
unless ``--budget-store`` or ``$ZIGZIIK_BUDGET_STORE`` names another store.

Exit status: 0 success; 1 something failed (an API or network error, a refused budget, a
harvest with failures); 2 a usage or configuration error (a missing key, a bad URL, a
missing optional dependency); 130 interrupted (a harvest resumes when run again).

Output: results and summaries on stdout, progress bars and errors on stderr. The bars and
tables need ``rich`` (``pip install 'zigziik[cli]'``); the demo also needs the fake server's
dependencies (``pip install 'zigziik[demo]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import __version__
from .errors import BudgetExhaustedError, BudgetStoreError, ConfigurationError, ZigziikError
from .ratelimit import BudgetSnapshot, BudgetStore, DailyBudget
from .zigna._convert import unstructure
from .zigna._settings import BudgetSettings, budget_settings, open_budget, zigna_settings
from .zigna.client import ZignaClient
from .zigna.harvest import HarvestEstimate, HarvestEvent, HarvestFailure, HarvestReport
from .zigna.harvest._manifest import MANIFEST_NAME
from .zigna.harvest._report import STRATEGIES
from .zigna.models import Order
from .ziik.client import ZiikClient
from .ziik.models import Unit

TRANSPORTS = ("auto", "httpx", "aiohttp")

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, Task


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "zigziik"
CLI_HINT = "pip install 'zigziik[cli]'"
DEMO_HINT = "pip install 'zigziik[demo]'"
DEFAULT_DEMO_DEST = "demo-harvest"
_MAX_FAILURE_ROWS = 20

logger = logging.getLogger("zigziik")


class _Usage(Exception):
    """A usage or environment problem: one line on stderr, exit status 2."""


# --------------------------------------------------------------------------------------------
# Arguments


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _shard(text: str) -> tuple[int, int]:
    """``K/N``: shard K (0 to N-1) of N."""
    k_text, slash, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a shard K/N (e.g. 0/4 for the first of four): {text!r}"
        ) from None
    if not slash or n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"a shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def _status_id(text: str) -> int:
    """An order status: its number (5) or its name (completed, photos_uploaded)."""
    from .zigna.models import OrderStatus

    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        return int(OrderStatus[text.strip().upper().replace("-", "_").replace(" ", "_")])
    except KeyError:
        names = ", ".join(s.name.lower() for s in OrderStatus)
        raise argparse.ArgumentTypeError(
            f"not an order status: {text!r} (a number, or one of {names})"
        ) from None


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _zigna_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("Zigna connection")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="the Zigna API key, a GUID (default: $ZIGNA_API_KEY; prefer the variable, "
        "a flag shows in the process list)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="the API's base URL (default: $ZIGNA_BASE_URL, else https://api.zigna.dk/v2)",
    )
    group.add_argument(
        "--daily-limit",
        type=_non_negative_int,
        metavar="N",
        help="calls allowed per day until the server says otherwise (default: 2000)",
    )
    group.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="request timeout")
    group.add_argument(
        "--budget-store",
        metavar="URL",
        help="where the daily budget is counted, shared by every run and process that uses it: "
        "sqlite:///path.db, redis://host:6379/0, memory: (default: $ZIGZIIK_BUDGET_STORE, "
        "else a SQLite file in the user cache folder)",
    )
    return parent


def default_budget_store_url() -> str:
    """The CLI's own store: ``budget.db`` in the user cache folder (``$XDG_CACHE_HOME/zigziik``
    on Linux), so that every run on this machine and account shares one count."""
    try:
        from platformdirs import user_cache_path
    except ImportError:  # the cli extra brings it; without it, the XDG default
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(base) / "zigziik"
    else:
        folder = user_cache_path("zigziik", appauthor=False)
    return f"sqlite://{(folder / 'budget.db').absolute().as_posix()}"


def _budget_settings(args: argparse.Namespace) -> BudgetSettings:
    """``--budget-store``, ``$ZIGZIIK_BUDGET_STORE`` or the CLI's own store; ``--daily-limit``
    or ``$ZIGZIIK_DAILY_LIMIT`` (as a client reads them)."""
    default = default_budget_store_url()
    settings = budget_settings(
        os.environ,
        store_url=args.budget_store,
        daily_limit=args.daily_limit,
        default_store_url=default,
    )
    if settings.store_url == default:
        Path(default.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)
    return settings


def _harvest_options(*, dest: bool) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("harvest")
    if dest:
        group.add_argument("dest", metavar="DEST", help="the folder to harvest into")
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="per picture, one zip per order, or per picture while the budget affords it "
        "(default: auto)",
    )
    group.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="requests in flight at most (default: 8)",
    )
    group.add_argument("--extract", action="store_true", help="unpack zips into the order folder")
    group.add_argument(
        "--no-progress", action="store_true", help="no progress bars (none when not a terminal)"
    )
    group.add_argument("--json", action="store_true", help="print the report as JSON")
    group.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="auto",
        help="how the bytes move: httpx's own transport, or aiohttp's (the 'aiohttp' extra, "
        "about 1.8 times as fast for big harvests); auto: aiohttp when it is installed",
    )
    scale = parent.add_argument_group("harvests at scale")
    scale.add_argument(
        "--status",
        dest="statuses",
        action="append",
        type=_status_id,
        metavar="ID",
        help="only orders with this status (a number or a name such as completed; "
        "repeatable); the others cost nothing beyond the listing",
    )
    scale.add_argument(
        "--since",
        type=_date,
        metavar="DATE",
        help="only orders created on or after DATE (YYYY-MM-DD)",
    )
    scale.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="only shard K (0 to N-1) of N: run N processes, one per shard, into one DEST",
    )
    scale.add_argument(
        "--until-complete",
        action="store_true",
        help="when the daily budget is spent, wait for its reset and go on (however long) "
        "until nothing is left; Ctrl-C stops, running again resumes",
    )
    scale.add_argument(
        "--recheck",
        action="store_true",
        help="list the orders recorded complete again (one call each) to fetch new pictures",
    )
    scale.add_argument(
        "--dry-run",
        action="store_true",
        help="list and plan only: print the orders by route, the calls and the days the "
        "plan needs at the current budget; fetch nothing",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``zigziik`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Harvest real-estate pictures from Zigna v2 and look at Ziik units.",
        epilog="Exit status: 0 ok, 1 something failed, 2 usage or configuration error, "
        "130 interrupted. Run 'zigziik demo' to see a harvest against a local fake server.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv: every request)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    zigna = _zigna_options()

    harvest = commands.add_parser(
        "harvest",
        parents=[_harvest_options(dest=True), zigna],
        help="download every picture of every order (or of --order ...) into DEST",
        description="Download every picture of every order (or of the given orders) into "
        "DEST/<order>/, within the daily budget. A manifest in DEST records what is "
        "complete: run it again to fetch only what is missing.",
    )
    harvest.add_argument(
        "--order",
        dest="orders",
        action="append",
        metavar="ID",
        help="harvest only this order (repeatable)",
    )
    harvest.set_defaults(handler=_cmd_harvest)

    orders = commands.add_parser("orders", help="list or show orders")
    order_commands = orders.add_subparsers(dest="orders_command", metavar="ACTION")
    listing = order_commands.add_parser("list", parents=[zigna], help="list the orders")
    listing.add_argument(
        "--limit", type=_positive_int, metavar="N", help="show at most N orders (fewer calls)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON (the API's keys)")
    listing.set_defaults(handler=_cmd_orders_list)
    show = order_commands.add_parser("show", parents=[zigna], help="show one order")
    show.add_argument("order_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON (the API's keys)")
    show.set_defaults(handler=_cmd_orders_show)
    orders.set_defaults(handler=None, parser=orders)

    budget = commands.add_parser(
        "budget",
        parents=[zigna],
        help="show the daily budget: calls allowed, used and left, and when it resets",
        description="Read the daily budget of the API key from its store (the one every "
        "zigziik run on this machine shares, or --budget-store / $ZIGZIIK_BUDGET_STORE). "
        "Spends no call.",
    )
    budget.add_argument(
        "--json",
        action="store_true",
        help="print JSON: limit, used, remaining, reset_at, store",
    )
    budget.set_defaults(handler=_cmd_budget)

    units = commands.add_parser("units", help="Ziik units")
    unit_commands = units.add_subparsers(dest="units_command", metavar="ACTION")
    tree = unit_commands.add_parser(
        "tree",
        help="print the unit hierarchy",
        description="Walk the Ziik unit hierarchy (credentials: $ZIIK_TOKEN, or "
        "$ZIIK_USERNAME and $ZIIK_PASSWORD) and print it as a tree.",
    )
    tree.add_argument("--root", type=_non_negative_int, metavar="ID", help="start at this unit")
    tree.add_argument("--max-depth", type=_non_negative_int, metavar="N", help="levels below")
    tree.add_argument("--concurrency", type=_positive_int, default=8, metavar="N")
    tree.add_argument(
        "--base-url", metavar="URL", help="https://<tenant>.ziik.io/api (default: $ZIIK_BASE_URL)"
    )
    tree.add_argument(
        "--token", metavar="TOKEN", help="bearer token (default: $ZIIK_TOKEN; prefer the variable)"
    )
    tree.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="request timeout")
    tree.set_defaults(handler=_cmd_units_tree)
    units.set_defaults(handler=None, parser=units)

    demo = commands.add_parser(
        "demo",
        parents=[_harvest_options(dest=False)],
        help="harvest from a fake Zigna server on this machine (no key, no network)",
        description="Start the fake Zigna server on loopback and run a real harvest against "
        f"it into --dest (default: ./{DEFAULT_DEMO_DEST}), with progress bars and a summary.",
    )
    demo.add_argument(
        "--dest", default=DEFAULT_DEMO_DEST, metavar="DIR", help="the folder to harvest into"
    )
    demo.add_argument(
        "--orders", type=_positive_int, default=12, metavar="N", help="orders on the fake server"
    )
    demo.add_argument(
        "--daily-limit",
        type=_non_negative_int,
        default=2000,
        metavar="N",
        help="the fake server's daily limit (try 20 to see the auto strategy zip)",
    )
    demo.add_argument(
        "--day-seconds",
        type=_seconds,
        default=86_400.0,
        metavar="SECONDS",
        help="how long the fake server's day lasts (try 5 with --daily-limit 20 "
        "--until-complete to watch a harvest wait for its resets)",
    )
    demo.add_argument(
        "--latency",
        type=float,
        default=0.02,
        metavar="SECONDS",
        help="delay the fake adds to each request (default: 0.02)",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


# --------------------------------------------------------------------------------------------
# Output helpers


def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    return Console(), Console(stderr=True)


def _error(message: str) -> None:
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)


def _zigna_client(args: argparse.Namespace, *, http_client: Any = None) -> Any:
    """The Zigna client of the command line's options (over ``http_client`` if given)."""

    settings = zigna_settings(
        os.environ, api_key=args.api_key, base_url=args.base_url, how_to_give_key="pass --api-key"
    )
    budget, store = open_budget(_budget_settings(args))
    options: dict[str, Any] = {"budget": budget, "timeout": args.timeout}
    if http_client is not None:
        options["http_client"] = http_client
    client = ZignaClient(settings.api_key, base_url=settings.base_url, **options)
    if store is not None:
        client.adopt_store(store)  # closed with the client
    return client


def _when(value: datetime | None) -> str:
    return value.isoformat(sep=" ") if value is not None else ""


def _status(order: Order) -> str:
    status = order.status_id
    name = getattr(status, "name", None)
    label = name.replace("_", " ").lower() if isinstance(name, str) else order.status or ""
    return f"{int(status)} {label}".strip() if status is not None else (order.status or "")


# --------------------------------------------------------------------------------------------
# harvest (and the demo)


class HarvestBars:
    """A rich progress display fed by harvest events: files and bytes."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.progress: Progress = Progress(
            TextColumn("{task.description:>7}"),
            BarColumn(),
            TaskProgressColumn(),
            _detail_column(),
            console=console,
            disable=not enabled,
            refresh_per_second=8,
        )
        self.files = self.progress.add_task("files", total=None, kind="files")
        self.bytes = self.progress.add_task("bytes", total=None, kind="bytes")
        self.console = console
        self.enabled = enabled
        self.wait: Any = None  # the countdown's task while waiting for the budget's reset
        self.planned_files = 0
        self.planned_bytes = 0
        self.done_files = 0
        self.skipped = 0
        self.failed = 0

    def __enter__(self) -> HarvestBars:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for task in self.progress.tasks:
            if task.total is None:  # nothing was planned: show an empty, finished bar
                self.progress.update(task.id, total=0)
        self.progress.stop()

    def __call__(self, event: HarvestEvent) -> None:
        """The harvest's progress callback."""
        progress = self.progress
        if event.kind in ("wait", "resume"):
            self._wait(event)
            return
        if event.kind == "order":
            self.planned_files += event.files
            self.planned_bytes += event.bytes
            progress.update(self.files, total=self.planned_files)
            progress.update(self.bytes, total=self.planned_bytes)
        elif event.kind == "bytes":
            task = progress.tasks[self.bytes]
            total = task.total or 0
            if task.completed + event.bytes > total:  # a zip, or a retried attempt
                progress.update(self.bytes, total=task.completed + event.bytes)
            progress.advance(self.bytes, event.bytes)
        elif event.kind == "skip":
            self.skipped += event.files
            progress.update(self.files, skipped=self.skipped)
        elif event.kind in ("file", "empty", "fail"):
            if event.kind == "fail":
                self.failed += 1
            self.done_files += event.files
            progress.update(self.files, completed=self.done_files, failed=self.failed)

    def _wait(self, event: HarvestEvent) -> None:
        progress = self.progress
        if event.kind == "resume":
            if self.wait is not None:
                progress.remove_task(self.wait)
                self.wait = None
            message = f"{PROG}: the budget is reset; going on with {event.orders} orders"
            if self.enabled:
                progress.console.print(message, highlight=False)
            else:
                print(message, file=sys.stderr, flush=True)
            return
        seconds = event.seconds or 0.0
        text = wait_text(event)
        if self.wait is None:
            when = event.reset_at.astimezone() if event.reset_at is not None else None
            message = (
                f"{PROG}: the daily budget is spent; waiting for its reset"
                + (f" at {when:%Y-%m-%d %H:%M:%S %Z}" if when is not None else "")
                + (f" with {event.orders} orders left" if event.orders else " (listing the orders)")
                + " (Ctrl-C stops; run again to resume)"
            )
            if self.enabled:
                progress.console.print(message, highlight=False)
            else:
                print(message, file=sys.stderr, flush=True)
            self.wait = progress.add_task("budget", total=max(seconds, 1.0), kind="wait")
        progress.update(self.wait, completed=0, detail=text)


def wait_text(event: HarvestEvent) -> str:
    """``reset in 3:12:05, 1,234 orders left`` for a ``wait`` event."""
    seconds = max(0, round(event.seconds or 0.0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    files = f", at least {event.files:,} pictures" if event.files else ""
    left = f"{event.orders:,} orders left{files}" if event.orders else "listing the orders"
    return f"reset in {hours}:{minutes:02d}:{secs:02d}, {left}"


def _detail_column() -> ProgressColumn:
    """A column showing ``12/40 files, 3 skipped`` or ``1.2 MB of 8.0 MB  5.1 MB/s``."""
    from rich.filesize import decimal
    from rich.progress import ProgressColumn
    from rich.text import Text

    class DetailColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            if task.fields.get("kind") == "wait":
                return Text(str(task.fields.get("detail", "")))
            if task.fields.get("kind") == "files":
                total = int(task.total) if task.total is not None else 0
                parts = [f"{int(task.completed)}/{total} files"]
                if task.fields.get("skipped"):
                    parts.append(f"{task.fields['skipped']} skipped")
                if task.fields.get("failed"):
                    parts.append(f"{task.fields['failed']} failed")
                return Text(", ".join(parts))
            speed = task.finished_speed or task.speed
            shown = decimal(int(task.completed))
            if task.total:
                shown += f" of {decimal(int(task.total))}"
            if speed:
                shown += f"  {decimal(int(speed))}/s"
            return Text(shown)

    return DetailColumn()


def report_json(report: HarvestReport) -> dict[str, Any]:
    """The report as JSON-ready data."""
    return {
        "orders": report.orders,
        "written": report.written,
        "skipped": report.skipped,
        "failed": report.failed,
        "bytes": report.bytes,
        "calls": report.calls,
        "waits": report.waits,
        "failures": _failures_json(report.failures),
    }


def _failures_json(failures: list[HarvestFailure]) -> list[dict[str, Any]]:
    return [
        {"order_id": f.order_id, "picture_id": f.picture_id, "reason": f.reason} for f in failures
    ]


def two_column_table(title: str) -> Any:
    """A rich table of what and value rows, titled on the left, without a header."""
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    return table


def print_summary(
    console: Console,
    report: HarvestReport,
    budget: DailyBudget | BudgetSnapshot | None,
    dest: Path,
) -> None:
    """The end-of-harvest table, and the failures if any."""
    from rich.filesize import decimal
    from rich.table import Table

    table = two_column_table("Harvest summary")
    table.add_row("Orders", str(report.orders))
    table.add_row("Files written", str(report.written))
    table.add_row("Files skipped", str(report.skipped))
    failed_style = "red" if report.failures else ""
    table.add_row("Failed", f"[{failed_style}]{report.failed}[/]" if failed_style else "0")
    exact = f" ({report.bytes:,} bytes)" if report.bytes >= 1000 else ""
    table.add_row("Bytes written", f"{decimal(report.bytes)}{exact}")
    table.add_row("Calls spent", str(report.calls))
    if report.waits:
        table.add_row("Waited for a reset", f"{report.waits} times")
    if budget is not None:
        table.add_row(
            "Budget left",
            f"{budget.remaining} of {budget.limit} "
            f"(resets {budget.reset_at.astimezone():%Y-%m-%d %H:%M %Z})",
        )
    table.add_row("Folder", str(dest))
    console.print(table)
    if report.failures:
        failures = Table(title="Failures", title_justify="left", title_style="bold red")
        failures.add_column("order")
        failures.add_column("picture")
        failures.add_column("reason", overflow="fold")
        for failure in report.failures[:_MAX_FAILURE_ROWS]:
            failures.add_row(
                failure.order_id or "-",
                str(failure.picture_id) if failure.picture_id is not None else "-",
                failure.reason,
            )
        console.print(failures)
        hidden = len(report.failures) - _MAX_FAILURE_ROWS
        if hidden > 0:
            console.print(f"... and {hidden} more failures (--json lists them all)")


def estimate_json(estimate: HarvestEstimate) -> dict[str, Any]:
    """The dry run's figures as JSON-ready data."""
    return {
        "orders": estimate.orders,
        "done": estimate.done,
        "routes": dict(estimate.routes),
        "calls": estimate.calls,
        "calls_min": estimate.calls_min,
        "listing_calls": estimate.listing_calls,
        "limit": estimate.limit,
        "remaining": estimate.remaining,
        "days": estimate.days,
        "assumed_pictures": estimate.assumed_pictures,
        "failures": _failures_json(estimate.failures),
    }


_ROUTE_NAMES = {
    "pictures": "per picture",
    "auto": "per picture while the budget affords it, else zip",
    "zip": "one zip each",
    "later": "after a reset (today's budget cannot pay for them)",
}


def print_estimate(console: Console, estimate: HarvestEstimate, dest: Path) -> None:
    """The dry run's table: orders by route, the calls and days the plan needs."""

    table = two_column_table("Harvest plan (dry run: nothing fetched)")
    table.add_row("Orders", f"{estimate.orders:,}")
    table.add_row("Complete already", f"{estimate.done:,} (no call)")
    for route, count in estimate.routes.items():
        table.add_row(f"  {_ROUTE_NAMES.get(route, route)}", f"{count:,} orders")
    table.add_row(
        "Calls needed",
        f"about {estimate.calls:,} (at least {estimate.calls_min:,}; "
        f"{estimate.assumed_pictures} missing pictures assumed per order listed)",
    )
    table.add_row("Calls spent (listing)", f"{estimate.listing_calls:,}")
    if estimate.limit is not None:
        table.add_row("Budget", f"{estimate.remaining:,} of {estimate.limit:,} left today")
    if estimate.days is not None:
        table.add_row("Days at this budget", f"{estimate.days:,}")
    table.add_row("Folder", str(dest))
    console.print(table)
    for failure in estimate.failures[:_MAX_FAILURE_ROWS]:
        console.print(f"[red]failed[/]: {failure.order_id or '-'}: {failure.reason}")


def _scale_options(args: argparse.Namespace) -> dict[str, Any]:
    """The harvest's ``select``, ``shard``, ``until_complete`` and ``recheck`` from flags."""
    options: dict[str, Any] = {}
    statuses = set(args.statuses or ())
    since: date | None = args.since
    if statuses or since is not None:
        start = datetime(since.year, since.month, since.day) if since is not None else None

        def select(order: Order) -> bool:
            if statuses and (order.status_id is None or int(order.status_id) not in statuses):
                return False
            created = order.created
            if start is not None:
                if created is None:
                    return False
                if created.tzinfo is not None:  # the API's are naive; compare as UTC
                    created = created.astimezone(timezone.utc).replace(tzinfo=None)
                if created < start:
                    return False
            return True

        options["select"] = select
    if args.shard is not None:
        options["shard"] = args.shard
    if args.until_complete:
        options["until_complete"] = True
    if args.recheck:
        options["recheck"] = True
    return options


def _http_client(transport: str, timeout: float | None) -> Any:
    """The httpx client to harvest through: ``None`` for zigziik's own (httpx's transport)."""
    if transport == "httpx":
        return None
    try:
        from .transports import aiohttp_client
    except ImportError:
        if transport == "aiohttp":
            raise _Usage(
                "--transport aiohttp needs aiohttp: pip install 'zigziik[cli,aiohttp]'"
            ) from None
        return None
    return aiohttp_client(timeout=timeout) if timeout is not None else aiohttp_client()


async def run_harvest(
    make_client: Callable[[], Any],
    dest: Path,
    *,
    order_ids: list[str] | None,
    strategy: str,
    concurrency: int,
    extract: bool,
    bars: bool,
    as_json: bool,
    out: Console,
    err: Console,
    http_client: Any = None,
    scale: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> int:
    """Harvest with bars, print the summary (or JSON); the exit status.

    ``scale`` holds the harvest's ``select``, ``shard``, ``until_complete`` and ``recheck``;
    ``dry_run`` prints what the plan needs instead (`print_estimate`).

    ``http_client``, the httpx client ``make_client()``'s Zigna client sends through (if not
    its own), is closed after it.
    """
    async with contextlib.AsyncExitStack() as stack:
        if http_client is not None:
            await stack.enter_async_context(http_client)
        zigna = await stack.enter_async_context(make_client())
        options = dict(scale or {})
        if dry_run:
            from .zigna.harvest import estimate_harvest

            options.pop("until_complete", None)
            estimate = await estimate_harvest(
                zigna,
                dest,
                order_ids=order_ids,
                strategy=strategy,  # type: ignore[arg-type]
                **options,
            )
            if as_json:
                print(json.dumps(estimate_json(estimate), ensure_ascii=False, indent=2))
            else:
                print_estimate(out, estimate, dest)
            return EXIT_OK if not estimate.failures else EXIT_FAILED
        with HarvestBars(err, enabled=bars and not as_json and err.is_terminal) as display:
            report: HarvestReport = await zigna.harvest(
                dest,
                order_ids=order_ids,
                strategy=strategy,
                concurrency=concurrency,
                extract=extract,
                progress=display,
                **options,
            )
        budget: DailyBudget | BudgetSnapshot | None = zigna.budget
        if zigna.budget is not None:
            with contextlib.suppress(BudgetStoreError):  # then this process's last figures
                budget = await zigna.budget.snapshot()  # the shared figure, now
    if as_json:
        print(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    else:
        print_summary(out, report, budget, dest)
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_harvest(args: argparse.Namespace) -> int:
    out, err = _consoles()
    http_client = _http_client(args.transport, args.timeout)
    # ConfigurationError before anything else happens.
    client = _zigna_client(args, http_client=http_client)
    return _harvest_with_options(
        lambda: client, Path(args.dest), args.orders, args, out, err, http_client
    )


def _harvest_with_options(
    make_client: Callable[[], Any],
    dest: Path,
    order_ids: list[str] | None,
    args: argparse.Namespace,
    out: Console,
    err: Console,
    http_client: Any,
) -> int:
    """Run a harvest with the command line's strategy, concurrency and output options."""
    if order_ids is not None and (args.statuses or args.since is not None):
        raise _Usage("--status and --since pick from the order listing; not with --order")
    return anyio.run(
        lambda: run_harvest(
            make_client,
            dest,
            order_ids=order_ids,
            strategy=args.strategy,
            concurrency=args.concurrency,
            extract=args.extract,
            bars=not args.no_progress,
            as_json=args.json,
            out=out,
            err=err,
            http_client=http_client,
            scale=_scale_options(args),
            dry_run=args.dry_run,
        )
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .testing import DEMO_API_KEY, FakeZigna, serve
    except ImportError as exc:
        raise _Usage(
            f"the demo needs the fake server's dependencies ({exc.name}): {DEMO_HINT}"
        ) from None

    out, err = _consoles()
    dest = Path(args.dest)
    fake = FakeZigna(
        orders=args.orders,
        daily_limit=args.daily_limit,
        latency=args.latency,
        reset_period=args.day_seconds,
    )
    with serve(fake.app) as origin:
        base_url = origin + "/v2"
        if not args.json:
            err.print(
                f"[bold]zigziik demo[/]: a fake Zigna API with {args.orders} orders "
                f"({fake.picture_count} pictures) at {base_url}\n"
                f"harvesting into [bold]{dest}[/] (strategy {args.strategy}, "
                f"concurrency {args.concurrency})",
                highlight=False,
            )

        http_client = _http_client(args.transport, None)

        def make_client() -> ZignaClient:
            return ZignaClient(DEMO_API_KEY, base_url=base_url, http_client=http_client)

        status = _harvest_with_options(make_client, dest, None, args, out, err, http_client)
    if not args.json:
        err.print(
            "Run it again: what is complete is skipped without a call "
            f"(see {dest / MANIFEST_NAME}).",
            highlight=False,
        )
    return status


# --------------------------------------------------------------------------------------------
# orders


def _order_row(order: Order) -> list[str]:
    seller = order.seller
    address = ", ".join(p for p in (seller.address1, seller.city) if p) if seller else ""
    package = order.products.package_name if order.products is not None else None
    return [
        order.id or "",
        _status(order),
        order.case_number or "",
        _when(order.created),
        address,
        package or "",
    ]


def _cmd_orders_list(args: argparse.Namespace) -> int:

    out, _ = _consoles()
    client = _zigna_client(args)

    async def fetch() -> list[Order]:
        async with client as zigna:
            orders: list[Order] = await zigna.orders.list().collect(limit=args.limit)
            return orders

    orders = anyio.run(fetch)
    if args.json:
        print(json.dumps([unstructure(o) for o in orders], ensure_ascii=False, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"{len(orders)} orders", title_justify="left")
    for column in ("id", "status", "case", "created", "address", "package"):
        table.add_column(column, overflow="fold")
    for order in orders:
        table.add_row(*_order_row(order))
    out.print(table)
    return EXIT_OK


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, rows)
    elif isinstance(value, list):
        rows.append((prefix, ", ".join(str(v) for v in value)))
    else:
        rows.append((prefix, "" if value is None else str(value)))


def _cmd_orders_show(args: argparse.Namespace) -> int:

    out, _ = _consoles()
    client = _zigna_client(args)

    async def fetch() -> Order:
        async with client as zigna:
            order: Order = await zigna.orders.get(args.order_id)
            return order

    order = anyio.run(fetch)
    data = unstructure(order)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"Order {order.id}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, str]] = []
    _flatten("", data, rows)
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# budget


def budget_json(snapshot: BudgetSnapshot, store: BudgetStore) -> dict[str, Any]:
    """What ``zigziik budget --json`` prints."""
    return {
        "limit": snapshot.limit,
        "used": snapshot.used,
        "remaining": snapshot.remaining,
        "reset_at": snapshot.reset_at.isoformat(),
        "store": store.name,
    }


def _cmd_budget(args: argparse.Namespace) -> int:
    out, _ = _consoles()
    client = _zigna_client(args)

    async def read() -> BudgetSnapshot:
        async with client as zigna:
            snapshot: BudgetSnapshot = await zigna.budget.snapshot()
            return snapshot

    snapshot = anyio.run(read)
    store = client.budget.store
    if args.json:
        print(json.dumps(budget_json(snapshot, store), indent=2))
        return EXIT_OK
    table = two_column_table("Daily budget")
    table.add_row("Limit", str(snapshot.limit))
    table.add_row("Used", str(snapshot.used))
    table.add_row("Remaining", str(snapshot.remaining))
    table.add_row("Resets", f"{snapshot.reset_at.astimezone():%Y-%m-%d %H:%M %Z}")
    table.add_row("Store", store.name)
    out.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# units


def _unit_label(unit: Unit) -> str:
    from rich.markup import escape

    kind = unit.unit_type
    suffix = f" [dim]({kind})[/]" if kind not in (None, "") else ""
    return f"{escape(unit.name or '?')} [dim]#{unit.id}[/]{suffix}"


def _cmd_units_tree(args: argparse.Namespace) -> int:
    from rich.tree import Tree

    out, _ = _consoles()
    options: dict[str, Any] = {"timeout": args.timeout}
    client = ZiikClient(args.base_url, args.token, **options)

    async def walk() -> list[Any]:
        async with client as ziik:
            return [
                node
                async for node in ziik.units.walk(
                    args.root, concurrency=args.concurrency, max_depth=args.max_depth
                )
            ]

    nodes = anyio.run(walk)
    top = Tree(f"[bold]{client.base_url}[/] ({len(nodes)} units)")
    branches: dict[int | None, Tree] = {}
    for node in nodes:
        parent = branches.get(node.parent_id) if node.depth > 0 else None
        branch = (parent or top).add(_unit_label(node.unit))
        if node.unit.id is not None:
            branches[node.unit.id] = branch
    out.print(top)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# main


@contextlib.contextmanager
def _logging_to_stderr(verbose: int) -> Iterator[None]:
    """Show zigziik's warnings (``-v``: info, ``-vv``: debug) on stderr while a command runs."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "parser", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        import rich  # noqa: F401
    except ImportError:
        _error(f"the command line needs the 'rich' package: {CLI_HINT}")
        return EXIT_USAGE
    try:
        with _logging_to_stderr(args.verbose):
            return int(handler(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # On Python 3.10, anyio's asyncio runner turns Ctrl-C into a CancelledError of the
        # main task (3.11's asyncio.Runner raises KeyboardInterrupt): nothing else cancels it.
        resume = " (run the same command again to resume)" if args.command != "orders" else ""
        _error(f"interrupted{resume}")
        return EXIT_INTERRUPTED
    except (ConfigurationError, _Usage) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except BudgetExhaustedError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except ZigziikError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
