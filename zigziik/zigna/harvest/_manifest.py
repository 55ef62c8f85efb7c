"""The harvest's manifest: what is complete in a destination folder, shared by processes.

A SQLite database, ``.zigziik-manifest.sqlite`` in ``dest_dir``, in WAL mode (one host: WAL
needs shared memory, so no NFS), one row per order and one per picture file. Every write
is one ``BEGIN IMMEDIATE`` transaction, so several processes harvesting into one folder
(different shards) never lose each other's records; records are written by one helper
thread per run, in batches, never by the event loop's thread, and cost in proportion to
what changed. Reading today's ``.zigziik-manifest.json`` (zigziik 0.x) is kept: it is
migrated into the database on first use and renamed ``.zigziik-manifest.json.migrated``.

Everything read back is checked: a folder or file name that is not one safe path component
is dropped, so the worst a damaged or tampered manifest can do is make the harvest look at
the disk again. Nothing here follows a symbolic link: the manifest's files must not be links.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import attrs

from ..._filenames import sanitize_component, temporary_name

__all__ = [
    "LEGACY_MANIFEST_NAME",
    "MANIFEST_NAME",
    "FileRecord",
    "Manifest",
    "ManifestError",
    "ManifestStore",
    "ManifestWriter",
    "OrderRecord",
    "OrderSummary",
    "ZipRecord",
    "assign_folders",
    "load_manifest",
    "save_manifest",
]

logger = logging.getLogger("zigziik")

MANIFEST_NAME = ".zigziik-manifest.sqlite"
"""The manifest's file name in ``dest_dir`` (hidden; no order folder can ever have it)."""
LEGACY_MANIFEST_NAME = ".zigziik-manifest.json"
"""The JSON manifest of earlier versions, migrated on first use."""
MIGRATED_SUFFIX = ".migrated"

_FORMAT = "zigziik-harvest-manifest"
_JSON_VERSION = 1
_DB_VERSION = "2"
_BUSY_TIMEOUT_MS = 60_000
_BATCH_SECONDS = 0.25  # a batch of records waits at most this long for more
_BATCH_MAX = 2_000
_QUERY_CHUNK = 500  # order ids per query (SQLite allows 32,766 parameters; keep it small)
_MAX_REASON_CHARS = 300


class ManifestError(ValueError):
    """A manifest file is not one this version can read, or cannot be used safely."""


# --------------------------------------------------------------------------------------------
# Values


@attrs.define
class FileRecord:
    """A complete picture file: its name in the order's folder and its size."""

    name: str
    size: int


@attrs.define
class ZipRecord:
    """A complete zip of an order, and whether it was unpacked."""

    name: str
    size: int
    extracted: bool = False


@attrs.define
class OrderRecord:
    """What is known to be complete of one order."""

    folder: str
    complete: bool = False
    """Every picture of the order (or its zip) is on disk."""
    fingerprint: str | None = None
    """`order_fingerprint` of the order as listed when it was completed."""
    pictures: dict[str, FileRecord] = attrs.Factory(dict)
    zip: ZipRecord | None = None

    def files(self) -> list[FileRecord]:
        """Every file recorded for the order (the zip last)."""
        files = list(self.pictures.values())
        if self.zip is not None:
            files.append(FileRecord(self.zip.name, self.zip.size))
        return files

    def summary(self) -> OrderSummary:
        """The record as a resume looks at it (`OrderSummary`)."""
        files = self.files() if self.complete else []
        return OrderSummary(
            self.folder,
            self.complete,
            self.fingerprint,
            tuple(f.name for f in files),
            tuple(f.size for f in files),
            self.zip,
        )


@attrs.frozen
class OrderSummary:
    """An order's record as a resume looks at it first: its files as plain pairs.

    What `ManifestStore.summaries` reads for every order of a run, from one row per order
    (no object per picture); the per-picture record (`OrderRecord`) is read only for an
    order that is fetched.
    """

    folder: str
    complete: bool
    fingerprint: str | None = None
    names: tuple[str, ...] = ()
    """Every file recorded for a complete order, the zip last; empty when the order is not
    complete."""
    sizes: tuple[int, ...] = ()
    """Their sizes, in the same order."""
    zip: ZipRecord | None = None


@attrs.define
class Manifest:
    """The record of what a harvest into one folder has completed, order by order.

    The whole manifest in memory: what `load_manifest` returns (for tools and tests) and what
    a JSON manifest of earlier versions holds. A harvest itself reads the database order by
    order (`ManifestStore`), never all of it at once.
    """

    orders: dict[str, OrderRecord] = attrs.Factory(dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict in the format of earlier versions (see `from_json`)."""
        orders: dict[str, Any] = {}
        for order_id, record in self.orders.items():
            entry: dict[str, Any] = {"folder": record.folder, "complete": record.complete}
            if record.fingerprint is not None:
                entry["fingerprint"] = record.fingerprint
            if record.pictures:
                entry["pictures"] = {
                    pid: {"name": f.name, "size": f.size} for pid, f in record.pictures.items()
                }
            if record.zip is not None:
                entry["zip"] = {
                    "name": record.zip.name,
                    "size": record.zip.size,
                    "extracted": record.zip.extracted,
                }
            orders[order_id] = entry
        return {"format": _FORMAT, "version": _JSON_VERSION, "orders": orders}

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """Read `to_json`'s form (the JSON manifest of earlier versions) back.

        Raises `ManifestError` when ``data`` is not a manifest of this version at all; single
        entries that are malformed or unsafe (a folder or file name that is not one safe
        path component) are dropped.
        """
        if not isinstance(data, dict):
            raise ManifestError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != _FORMAT:
            raise ManifestError("not a zigziik harvest manifest")
        if data.get("version") != _JSON_VERSION:
            raise ManifestError(f"unsupported manifest version {data.get('version')!r}")
        orders = data.get("orders")
        if not isinstance(orders, dict):
            raise ManifestError("'orders' is not an object")
        manifest = cls()
        for order_id, entry in orders.items():
            record = _order_record(entry)
            if record is not None and order_id:
                manifest.orders[order_id] = record
        return manifest


def _is_safe_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value) and sanitize_component(value) == value


_NOT_ONE_COMPONENT = frozenset(("", ".", ".."))


def _is_one_component(value: object) -> TypeGuard[str]:
    """A name that can only ever mean one entry of its folder (no separator, no ``..``).

    Enough for a picture's recorded name: it is only looked at (``lstat``), never written to
    (files are written under names made from the listing); the full `sanitize_component`
    check costs too much for every file of a big harvest on every resume.
    """
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and "/" not in value
        and "\\" not in value
        and "\x00" not in value
    )


def _is_size(value: object) -> TypeGuard[int]:
    return type(value) is int and value >= 0


def _file_record(entry: object) -> FileRecord | None:
    if not isinstance(entry, dict):
        return None
    name, size = entry.get("name"), entry.get("size")
    if not _is_safe_name(name) or not _is_size(size):
        return None
    return FileRecord(name, size)


def _order_record(entry: object) -> OrderRecord | None:
    if not isinstance(entry, dict):
        return None
    folder = entry.get("folder")
    if not _is_safe_name(folder):
        return None
    fingerprint = entry.get("fingerprint")
    record = OrderRecord(
        folder=folder,
        complete=entry.get("complete") is True,
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
    )
    pictures = entry.get("pictures", {})
    intact = isinstance(pictures, dict)
    for pid, value in pictures.items() if isinstance(pictures, dict) else ():
        file = _file_record(value)
        if file is None or not isinstance(pid, str):
            intact = False
            continue
        record.pictures[pid] = file
    zip_entry = entry.get("zip")
    if zip_entry is not None:
        file = _file_record(zip_entry)
        if file is None:
            intact = False
        else:
            extracted = isinstance(zip_entry, dict) and zip_entry.get("extracted") is True
            record.zip = ZipRecord(file.name, file.size, extracted)
    if not intact:
        record.complete = False
    return record


# --------------------------------------------------------------------------------------------
# Folders (pure)


def fold(name: str) -> str:
    """A folder name as a case-insensitive file system compares it."""
    return unicodedata.normalize("NFC", name).casefold()


def assign_folders(order_ids: Sequence[str], manifest: Manifest) -> dict[str, str]:
    """One folder name per order: ``sanitize_component(order_id)``, kept distinct.

    A folder the manifest already gives an order is kept. Two orders whose ids sanitise to
    the same name (compared ignoring case, as some file systems do) are told apart by a
    short hash of the id; folders the manifest holds for orders outside this run stay theirs.
    """
    known = {order_id: record.folder for order_id, record in manifest.orders.items()}
    return _assign(order_ids, known)


def _assign(order_ids: Iterable[str], known: dict[str, str]) -> dict[str, str]:
    taken: dict[str, str] = {}
    for order_id, folder in known.items():
        taken.setdefault(fold(folder), order_id)
    folders: dict[str, str] = {}
    order_ids = list(order_ids)
    for order_id in order_ids:
        kept = known.get(order_id)
        if kept is not None and taken.get(fold(kept)) == order_id:
            folders[order_id] = kept
    for order_id in order_ids:
        if order_id in folders:
            continue
        candidate = sanitize_component(order_id)
        digest = hashlib.sha256(order_id.encode("utf-8", "surrogatepass")).hexdigest()
        attempt = 0
        while taken.get(fold(candidate), order_id) != order_id:
            attempt += 1
            suffix = digest[:10] if attempt == 1 else f"{digest[:10]}-{attempt}"
            candidate = sanitize_component(
                f"{sanitize_component(order_id, max_bytes=150)}-{suffix}"
            )
        taken[fold(candidate)] = order_id
        folders[order_id] = candidate
    return folders


# --------------------------------------------------------------------------------------------
# The database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    folder_key TEXT NOT NULL UNIQUE,
    complete INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT,
    zip_name TEXT,
    zip_size INTEGER,
    zip_extracted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pictures (
    order_id TEXT NOT NULL,
    picture_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (order_id, picture_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS order_files (
    order_id TEXT PRIMARY KEY,
    files TEXT NOT NULL
) WITHOUT ROWID;
"""

# ``order_files``: a complete order's picture files in one string, ``name/size/name/size``
# (a name is one path component: never a "/"), made when the order is recorded complete.
# A resume reads it (one row per order) instead of a row per picture. The database keeps it
# true: any change to an order's picture rows, by any process of any version, deletes it
# (the triggers), and an order without one is read from its picture rows.
_SUMMARISE = (
    "INSERT OR REPLACE INTO order_files SELECT o.order_id, coalesce(group_concat(p.name || "
    "'/' || p.size, '/'), '') FROM orders o LEFT JOIN pictures p ON p.order_id = o.order_id "
)
_TRIGGER_NAMES = frozenset(
    f"pictures_{event}_forgets_files" for event in ("insert", "update", "delete")
)
_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS pictures_{event.lower()}_forgets_files AFTER {event} ON "
    f"pictures BEGIN DELETE FROM order_files WHERE order_id IN ({rows}); END"
    for event, rows in (
        ("INSERT", "NEW.order_id"),
        ("UPDATE", "OLD.order_id, NEW.order_id"),
        ("DELETE", "OLD.order_id"),
    )
)


def _refuse_links(dest: Path) -> None:
    """The manifest's files (and the legacy one) must be regular files, never links."""
    for name in (
        MANIFEST_NAME,
        MANIFEST_NAME + "-wal",
        MANIFEST_NAME + "-shm",
        MANIFEST_NAME + "-journal",
        LEGACY_MANIFEST_NAME,
    ):
        path = dest / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise ManifestError(
                f"{path} is a symbolic link; a harvest never writes through one (remove it)"
            )


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":  # pragma: no cover - odd file systems
            logger.warning("the harvest manifest %s cannot use WAL (%s)", path, mode)
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.executescript(_SCHEMA)
    except BaseException:
        connection.close()
        raise
    return connection


@contextlib.contextmanager
def _immediate(connection: sqlite3.Connection) -> Any:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _rows_of(
    connection: sqlite3.Connection, query: str, order_ids: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` for these orders: its ``{marks}`` is filled with one ``?`` per
    order id, _QUERY_CHUNK ids per statement (SQLite bounds a statement's parameters)."""
    for start in range(0, len(order_ids), _QUERY_CHUNK):
        chunk = list(order_ids[start : start + _QUERY_CHUNK])
        yield from connection.execute(query.format(marks=",".join("?" * len(chunk))), chunk)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."


def _check_version(format_name: object, version: object) -> None:
    if format_name != _FORMAT or version != _DB_VERSION:
        raise sqlite3.DatabaseError(f"not a zigziik harvest manifest of version {_DB_VERSION}")


class ManifestStore:
    """The manifest database of one folder (synchronous: call it from a worker thread).

    One connection guarded by a lock, so any thread may use it. Opening it creates the
    database if missing, moves a corrupt one aside (with a warning), and migrates a JSON
    manifest of earlier versions.
    """

    def __init__(self, dest: Path) -> None:
        _refuse_links(dest)
        self.dest = dest
        self.path = dest / MANIFEST_NAME
        self._lock = threading.Lock()
        try:
            self._db = self._open_checked()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{MANIFEST_NAME}.corrupt-{int(time.time())}")
            logger.warning(
                "the harvest manifest %s is unreadable (%s); moved aside to %s, starting "
                "afresh (files already on disk are still recognised)",
                self.path,
                _one_line(str(exc)),
                aside.name,
            )
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(self.path.with_name(MANIFEST_NAME + suffix))
            self._db = self._open_checked()
        try:
            self._migrate_json()
        except BaseException:
            self.close()
            raise

    def _open_checked(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise sqlite3.DatabaseError(f"{self.path} is a folder")
        db = _connect(self.path)
        try:
            with _immediate(db):
                row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO meta VALUES ('format', ?), ('version', ?)",
                        (_FORMAT, _DB_VERSION),
                    )
                else:
                    version = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
                    _check_version(row[0], version[0] if version is not None else None)
                triggers = {
                    name
                    for (name,) in db.execute(
                        "SELECT name FROM sqlite_master WHERE type = ?", ("trigger",)
                    )
                }
                if not triggers.issuperset(_TRIGGER_NAMES):
                    for trigger in _TRIGGERS:
                        db.execute(trigger)
                    # A database of an earlier version: its complete orders' summaries.
                    db.execute(_SUMMARISE + "WHERE o.complete = 1 GROUP BY o.order_id")
        except BaseException:
            db.close()
            raise
        return db

    def _migrate_json(self) -> None:
        legacy = self.dest / LEGACY_MANIFEST_NAME
        if not legacy.is_file():
            return
        try:
            manifest = Manifest.from_json(json.loads(legacy.read_bytes()))
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning(
                "ignoring the old harvest manifest %s: %s", legacy, _one_line(str(exc)) or exc
            )
            return
        with self._lock, _immediate(self._db) as db:
            done = db.execute("SELECT value FROM meta WHERE key = 'migrated_json'").fetchone()
            if done is None:
                _write_manifest(db, manifest)
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('migrated_json', ?)",
                    (str(int(time.time())),),
                )
        with contextlib.suppress(OSError):
            os.replace(legacy, legacy.with_name(LEGACY_MANIFEST_NAME + MIGRATED_SUFFIX))
        logger.info("migrated the harvest manifest %s into %s", legacy, self.path.name)

    def close(self) -> None:
        with self._lock:
            db = getattr(self, "_db", None)
            if db is not None:
                self._db = None  # type: ignore[assignment]
                db.close()

    # -- reading ---------------------------------------------------------------------------

    def claim_folders(self, order_ids: Sequence[str]) -> dict[str, str]:
        """One folder per order (`assign_folders`), recorded at once for other processes."""
        with self._lock, _immediate(self._db) as db:
            known = {
                order_id: folder
                for order_id, folder in db.execute("SELECT order_id, folder FROM orders")
                if _is_safe_name(folder)
            }
            folders = _assign(order_ids, known)
            new = [(o, f, fold(f)) for o, f in folders.items() if known.get(o) != f]
            db.executemany(
                "DELETE FROM pictures WHERE order_id = ?", [(o,) for o, _, _ in new if o in known]
            )
            db.executemany(
                "INSERT INTO orders (order_id, folder, folder_key) VALUES (?, ?, ?) "
                "ON CONFLICT (order_id) DO UPDATE SET folder = excluded.folder, "
                "folder_key = excluded.folder_key, complete = 0",
                new,
            )
        return folders

    def records(self, order_ids: Sequence[str]) -> dict[str, OrderRecord]:
        """The records of these orders (with their files), those the manifest has."""
        found: dict[str, OrderRecord] = {}
        with self._lock:
            for row in _rows_of(
                self._db,
                "SELECT order_id, folder, complete, fingerprint, zip_name, zip_size, "
                "zip_extracted FROM orders WHERE order_id IN ({marks})",
                order_ids,
            ):
                record = _row_record(row)
                if record is not None:
                    found[row[0]] = record
            for order_id, pid, name, size in _rows_of(
                self._db,
                "SELECT order_id, picture_id, name, size FROM pictures WHERE order_id IN ({marks})",
                order_ids,
            ):
                record = found.get(order_id)
                if record is None:
                    continue
                # `_is_one_component` and `_is_size`, inline: once per file of a resume.
                if (
                    type(name) is str
                    and name not in _NOT_ONE_COMPONENT
                    and "/" not in name
                    and "\\" not in name
                    and "\x00" not in name
                    and type(size) is int
                    and size >= 0
                ):
                    record.pictures[pid] = FileRecord(name, size)
                else:
                    record.complete = False
        return found

    def summaries(self, order_ids: Sequence[str]) -> dict[str, OrderSummary]:
        """The records of these orders as a resume looks at them (`OrderSummary`): one row
        per order (its files' summary), the picture rows only where it has none."""
        found: dict[str, OrderSummary] = {}
        unsummarised: list[str] = []
        with self._lock:
            for row in _rows_of(
                self._db,
                "SELECT o.order_id, folder, complete, fingerprint, zip_name, zip_size, "
                "zip_extracted, files FROM orders o LEFT JOIN order_files f "
                "ON f.order_id = o.order_id WHERE o.order_id IN ({marks})",
                order_ids,
            ):
                record = _row_record(row[:7])
                if record is None:
                    continue
                names: tuple[str, ...] = ()
                sizes: tuple[int, ...] = ()
                if record.complete:
                    files = _parse_files(row[7])
                    if files is None:
                        unsummarised.append(row[0])
                        continue
                    names, sizes = files
                    if record.zip is not None:  # the zip, last
                        names += (record.zip.name,)
                        sizes += (record.zip.size,)
                found[row[0]] = OrderSummary(
                    record.folder, record.complete, record.fingerprint, names, sizes, record.zip
                )
        for order_id, record in self.records(unsummarised).items():
            found[order_id] = record.summary()
        return found

    def record(self, order_id: str) -> OrderRecord | None:
        return self.records([order_id]).get(order_id)

    def manifest(self) -> Manifest:
        """The whole manifest in memory (for tools and tests)."""
        with self._lock:
            ids = [row[0] for row in self._db.execute("SELECT order_id FROM orders")]
        return Manifest(self.records(ids))

    # -- writing ---------------------------------------------------------------------------

    def apply(self, ops: Sequence[tuple[Any, ...]]) -> None:
        """Apply a batch of `ManifestWriter` operations in one transaction, in order; a run
        of ``file`` records goes in multi-row statements (`_insert_files`)."""
        with self._lock, _immediate(self._db) as db:
            files: list[tuple[Any, ...]] = []
            for op in ops:
                if op[0] == "file":
                    files.append(op[1:])
                    continue
                if files:
                    _insert_files(db, files)
                    files = []
                _apply(db, op)
            if files:
                _insert_files(db, files)

    def replace_all(self, manifest: Manifest) -> None:
        with self._lock, _immediate(self._db) as db:
            db.execute("DELETE FROM pictures")
            db.execute("DELETE FROM order_files")
            db.execute("DELETE FROM orders")
            _write_manifest(db, manifest)


def _parse_files(text: object) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """``order_files.files`` (``name/size/...``) as names and sizes; ``None`` when missing
    or malformed.

    Checked and converted as a whole (a few calls in C, not a few per file): every name one
    path component (`_is_one_component`), every size plain decimal digits.
    """
    if type(text) is not str:
        return None
    if not text:
        return (), ()
    parts = text.split("/")
    names, sizes = parts[0::2], parts[1::2]
    digits = "".join(sizes)
    if (
        len(names) != len(sizes)
        or "\\" in text
        or "\x00" in text
        or not _NOT_ONE_COMPONENT.isdisjoint(names)
        or not digits.isdigit()  # no sign, point, exponent or space
    ):
        return None
    # Every size in one call in C. JSON refuses what isdigit lets through: an empty size,
    # a leading zero, a digit that is not ASCII.
    try:
        numbers = json.loads(f"[{','.join(sizes)}]")
    except ValueError:
        return None
    return tuple(names), tuple(numbers)


def _row_record(row: tuple[Any, ...]) -> OrderRecord | None:
    _, folder, complete, fingerprint, zip_name, zip_size, extracted = row
    if not _is_safe_name(folder):
        return None
    record = OrderRecord(
        folder,
        complete=complete == 1,
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
    )
    if zip_name is not None:
        if _is_safe_name(zip_name) and _is_size(zip_size):
            record.zip = ZipRecord(zip_name, zip_size, extracted == 1)
        else:
            record.complete = False
    return record


def _write_manifest(db: sqlite3.Connection, manifest: Manifest) -> None:
    known = {fold(folder) for (folder,) in db.execute("SELECT folder FROM orders")}
    for order_id, record in manifest.orders.items():
        if fold(record.folder) in known:
            continue  # a folder the database gives another order already: not trusted
        known.add(fold(record.folder))
        zip_record = record.zip
        db.execute(
            "INSERT OR REPLACE INTO orders (order_id, folder, folder_key, complete, fingerprint,"
            " zip_name, zip_size, zip_extracted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order_id,
                record.folder,
                fold(record.folder),
                int(record.complete),
                record.fingerprint,
                zip_record.name if zip_record else None,
                zip_record.size if zip_record else None,
                int(zip_record.extracted) if zip_record else 0,
            ),
        )
        db.executemany(
            "INSERT OR REPLACE INTO pictures VALUES (?, ?, ?, ?)",
            [(order_id, pid, f.name, f.size) for pid, f in record.pictures.items()],
        )
    db.execute(
        _SUMMARISE + "WHERE o.complete = 1 AND o.order_id NOT IN (SELECT order_id FROM "
        "order_files) GROUP BY o.order_id"
    )


# Operations, as tuples (cheap to make on the event loop's thread):
#   ("begin", order_id)                  the order is being fetched: not complete
#   ("file", order_id, picture_id, name, size)
#   ("drop_except", order_id, [picture_id, ...])  forget the pictures not listed
#   ("zip", order_id, name, size)
#   ("done", order_id, fingerprint)      complete
#   ("extracted", order_id)


_FILE_ROWS = 128
_INSERT_FILES = {
    rows: "INSERT OR REPLACE INTO pictures VALUES " + ", ".join(["(?, ?, ?, ?)"] * rows)
    for rows in (1 << bit for bit in range(_FILE_ROWS.bit_length()))
}
"""Multi-row inserts of 1, 2, 4, ... `_FILE_ROWS` rows (a few statements to cache)."""


def _insert_files(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """``file`` records (order, picture, name, size), in order, a few statements in all.

    Each statement the writer thread runs gives up the GIL and must win it back from the
    event loop's thread: one statement per file cost both threads a hand-off per file.
    """
    while rows:
        count = 1 << (min(len(rows), _FILE_ROWS).bit_length() - 1)
        chunk, rows = rows[:count], rows[count:]
        db.execute(_INSERT_FILES[count], [value for row in chunk for value in row])


def _apply(db: sqlite3.Connection, op: tuple[Any, ...]) -> None:
    """One operation but ``file`` (`ManifestStore.apply` gives those to `_insert_files`)."""
    kind, order_id = op[0], op[1]
    if kind == "begin":
        db.execute("UPDATE orders SET complete = 0 WHERE order_id = ?", (order_id,))
    elif kind == "done":
        db.execute(
            "UPDATE orders SET complete = 1, fingerprint = ? WHERE order_id = ?",
            (op[2], order_id),
        )
        db.execute(_SUMMARISE + "WHERE o.order_id = ? GROUP BY o.order_id", (order_id,))
    elif kind == "zip":
        db.execute(
            "UPDATE orders SET zip_name = ?, zip_size = ?, zip_extracted = 0 WHERE order_id = ?",
            (op[2], op[3], order_id),
        )
    elif kind == "extracted":
        db.execute("UPDATE orders SET zip_extracted = 1 WHERE order_id = ?", (order_id,))
    elif kind == "drop_except":
        keep = set(op[2])
        gone = [
            (order_id, pid)
            for (pid,) in db.execute(
                "SELECT picture_id FROM pictures WHERE order_id = ?", (order_id,)
            )
            if pid not in keep
        ]
        db.executemany("DELETE FROM pictures WHERE order_id = ? AND picture_id = ?", gone)
    else:  # pragma: no cover - a bug
        raise ValueError(f"unknown manifest operation {kind!r}")


class ManifestWriter:
    """Records operations from the event loop (`put`: a deque append, no I/O, no wake-up)
    and writes them in batches.

    One helper thread per harvest wakes every `_BATCH_SECONDS` (or when the queue is long)
    and applies what was put, in order, in one transaction. `close` (synchronous, so that it
    runs in a ``finally`` after a cancellation too) writes what is left and waits for it.
    """

    def __init__(self, store: ManifestStore) -> None:
        self.store = store
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._warned = False
        self._thread = threading.Thread(
            target=self._run, name="zigziik-manifest-writer", daemon=True
        )
        self._thread.start()

    def put(self, op: tuple[Any, ...]) -> None:
        pending = self._pending
        pending.append(op)
        if len(pending) >= _BATCH_MAX:
            self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        pending = self._pending
        while True:
            self._wake.wait(_BATCH_SECONDS)
            self._wake.clear()
            stopping = self._stopping  # read before draining: nothing put before close is lost
            while pending:
                batch = [pending.popleft() for _ in range(min(len(pending), _BATCH_MAX))]
                self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        try:
            self.store.apply(batch)
        except (sqlite3.Error, OSError) as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot write the harvest manifest %s: %s", self.store.path, exc)


# --------------------------------------------------------------------------------------------
# Whole-manifest helpers


def load_manifest(dest_dir: Path) -> Manifest:
    """The whole manifest of ``dest_dir`` in memory (the database, else an old JSON one).

    Changes nothing (a JSON manifest is not migrated); a fresh one (with a logged warning)
    if it is unreadable.
    """
    dest_dir = Path(dest_dir)
    path = dest_dir / MANIFEST_NAME
    if os.path.lexists(path):
        try:
            _refuse_links(dest_dir)
            uri = path.resolve().as_uri() + "?mode=rw"  # rw: the last to close tidies the WAL
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
        except (sqlite3.Error, ManifestError, OSError) as exc:
            logger.warning("cannot read the harvest manifest %s (%s)", path, exc)
            return Manifest()
        try:
            db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            rows = db.execute(
                "SELECT order_id, folder, complete, fingerprint, zip_name, zip_size, "
                "zip_extracted FROM orders"
            ).fetchall()
            pictures = db.execute("SELECT order_id, picture_id, name, size FROM pictures")
            manifest = Manifest()
            for row in rows:
                record = _row_record(row)
                if record is not None:
                    manifest.orders[row[0]] = record
            for order_id, pid, name, size in pictures:
                record = manifest.orders.get(order_id)
                if record is None:
                    continue
                if _is_safe_name(name) and _is_size(size):
                    record.pictures[pid] = FileRecord(name, size)
                else:  # as in `ManifestStore.records`: what lost a file is not complete
                    record.complete = False
            return manifest
        except sqlite3.Error as exc:
            logger.warning(
                "ignoring the harvest manifest %s: %s; starting afresh (files already on "
                "disk are still recognised)",
                path,
                _one_line(str(exc)),
            )
            return Manifest()
        finally:
            db.close()
    return _load_json(dest_dir / LEGACY_MANIFEST_NAME)


def _load_json(path: Path) -> Manifest:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest()
    except OSError as exc:
        logger.warning("cannot read the harvest manifest %s (%s); starting afresh", path, exc)
        return Manifest()
    try:
        return Manifest.from_json(json.loads(raw))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and ManifestError included
        logger.warning(
            "ignoring the harvest manifest %s: %s; starting afresh (files already on disk "
            "are still recognised)",
            path,
            _one_line(str(exc)) or type(exc).__name__,
        )
        return Manifest()


def save_manifest(dest_dir: Path, manifest: Manifest) -> None:
    """Make ``manifest`` the whole manifest of ``dest_dir`` (one transaction)."""
    store = ManifestStore(Path(dest_dir))
    try:
        store.replace_all(manifest)
    finally:
        store.close()


def save_json_manifest(dest_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest`` as a JSON manifest of earlier versions (atomically; for tests)."""
    data = json.dumps(manifest.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
    final = dest_dir / LEGACY_MANIFEST_NAME
    temporary = dest_dir / temporary_name(LEGACY_MANIFEST_NAME)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data + b"\n")
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
