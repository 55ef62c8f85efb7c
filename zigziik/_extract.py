"""Safe, all-or-nothing extraction of zip archives (such as Zigna's picture zips).

Every member is checked before anything is written; then each file is streamed into a
temporary file beside its final place, and only when every member has been written and verified
are they all moved into place with :func:`os.replace`. On any failure or cancellation the
temporary files, the files this call already moved into place and the directories it created
are removed again.
"""

from __future__ import annotations

import contextlib
import functools
import lzma
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio.from_thread
import anyio.to_thread

from zigziik._filenames import is_reserved_name, temporary_name
from zigziik._safedir import SafeFolder, UnsafePathError
from zigziik.errors import IntegrityError

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_RATIO",
    "DEFAULT_MAX_TOTAL_BYTES",
    "RATIO_CHECK_MIN_BYTES",
    "UnsafeArchiveError",
    "extract_into",
    "extract_into_sync",
    "safe_extract",
    "safe_extract_sync",
]

DEFAULT_MAX_TOTAL_BYTES = 4 * 1024**3
DEFAULT_MAX_MEMBERS = 100_000
DEFAULT_MAX_RATIO = 200.0
#: Members declaring fewer uncompressed bytes than this are exempt from the ratio check: a small
#: run of zeros legitimately compresses far better than 200:1 and can do no harm.
RATIO_CHECK_MIN_BYTES = 1024 * 1024
#: Bytes decompressed per read; cancellation is checked between chunks.
CHUNK_SIZE = 256 * 1024

_MAX_COMPONENT_BYTES = 255
_MAX_MESSAGE_LINES = 1000
_SUPPORTED_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_ENCRYPTED_FLAGS = 0x0001 | 0x0040  # traditional PKWARE encryption, strong encryption
_DRIVE_RE = re.compile(r"[A-Za-z]:")
# What zipfile and the decompressors raise for broken archives.
_ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,  # bz2 reports bad data as OSError; so does a failing read of the archive
    ValueError,
    UnicodeDecodeError,
    NotImplementedError,
    RuntimeError,
)
_MAX_OPEN_FOLDERS = 64  # descriptors held at a time for an archive's folders


class UnsafeArchiveError(IntegrityError):
    """A zip archive has members that must not be extracted; nothing was written.

    ``members`` names the offending members (in archive order), ``problems`` holds one line per
    problem, archive-wide ones (too many members, too large in total) included. The message
    lists every problem, up to 1,000 lines.
    """

    def __init__(self, zip_path: str, problems: Sequence[str], members: Sequence[str]) -> None:
        self.zip_path = zip_path
        self.problems = tuple(problems)
        self.members = tuple(members)
        count = len(self.problems)
        lines = [f"  {problem}" for problem in self.problems[:_MAX_MESSAGE_LINES]]
        if count > _MAX_MESSAGE_LINES:
            lines.append(f"  ... and {count - _MAX_MESSAGE_LINES} more (see .problems)")
        joined = "\n".join(lines)
        super().__init__(
            f"unsafe zip archive {zip_path!r}, nothing extracted "
            f"({count} problem{'s' if count != 1 else ''}):\n{joined}"
        )


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool


@dataclass(frozen=True)
class _Limits:
    max_total_bytes: int
    max_members: int
    max_ratio: float


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _is_inside(root: str, path: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:  # different drives on Windows
        return False


def _dup_key(parts: Sequence[str]) -> str:
    """Compare names as a case-insensitive, normalising file system (and Windows) would."""
    return "/".join(unicodedata.normalize("NFC", part).casefold().rstrip(". ") for part in parts)


def _name_problems(name: str) -> tuple[list[str], tuple[str, ...], bool]:
    """Problems of a member name alone, its normalised segments, and whether it names a dir."""
    reasons: list[str] = []
    if _has_control(name):
        reasons.append("control character (NUL, newline, ...) in name")
    norm = name.replace("\\", "/")
    if norm.startswith("/"):
        reasons.append("absolute path")
    if _DRIVE_RE.match(norm):
        reasons.append("drive letter")
    elif ":" in norm:
        reasons.append("':' in name (drive letter or NTFS stream on Windows)")
    is_dir = norm.endswith("/")
    parts = tuple(part for part in norm.split("/") if part not in ("", "."))
    if not parts:
        reasons.append("empty name")
    for part in parts:
        if part == "..":
            reason = "'..' segment"
        elif not part.strip(". "):
            reason = f"segment {part!r} of only dots and spaces"
        elif is_reserved_name(part):
            reason = f"Windows device name {part!r}"
        elif len(part.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT_BYTES:
            reason = f"segment longer than {_MAX_COMPONENT_BYTES} bytes"
        else:
            continue
        if reason not in reasons:
            reasons.append(reason)
    return reasons, parts, is_dir


def _validate(
    zf: zipfile.ZipFile,
    zip_name: str,
    dest_real: str,
    limits: _Limits,
    checkpoint: Callable[[], None] | None,
) -> list[_Member]:
    """Check every member; return the extraction plan or raise `UnsafeArchiveError`."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchiveError(
            zip_name, [f"{len(infos)} members, more than the limit of {limits.max_members}"], []
        )
    zip_real = os.path.realpath(zip_name)
    problems: list[str] = []
    offenders: list[str] = []
    plan: list[_Member] = []
    files: dict[str, str] = {}  # duplicate key -> first member name
    dirs: set[str] = set()  # duplicate keys of explicit and implied directories
    total = 0
    for index, info in enumerate(infos):
        if checkpoint is not None and index % 256 == 255:
            checkpoint()
        name = info.orig_filename  # before zipfile cuts the name at a NUL byte
        reasons, parts, is_dir = _name_problems(name)

        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            reasons.append("symbolic link")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            reasons.append("special file (device, FIFO or socket)")
        elif stat.S_ISDIR(mode) and not is_dir:
            if info.file_size:
                reasons.append("directory mode on a member with data")
            is_dir = True
        if is_dir and info.file_size:
            reasons.append("directory entry with data")
        if info.flag_bits & _ENCRYPTED_FLAGS:
            reasons.append("encrypted")
        if info.compress_type not in _SUPPORTED_METHODS:
            reasons.append(f"unsupported compression method {info.compress_type}")
        if not is_dir:
            total += info.file_size
            if info.file_size >= RATIO_CHECK_MIN_BYTES:
                if info.compress_size <= 0:
                    reasons.append(f"declares {info.file_size} bytes from no compressed data")
                else:
                    ratio = info.file_size / info.compress_size
                    if ratio > limits.max_ratio:
                        reasons.append(
                            f"compression ratio {ratio:.0f}:1 over the limit of "
                            f"{limits.max_ratio:g}:1 (zip bomb?)"
                        )

        if parts:
            # Collisions inside the archive: exact and case-/normalisation-insensitive.
            for depth in range(1, len(parts)):
                prefix = _dup_key(parts[:depth])
                if prefix in files:
                    reasons.append(f"parent {files[prefix]!r} is a file in this archive")
                    break
            key = _dup_key(parts)
            if is_dir:
                if key in files:
                    reasons.append(f"directory duplicates the file {files[key]!r}")
            elif key in files:
                reasons.append(f"duplicate of {files[key]!r} (names are compared ignoring case)")
            elif key in dirs:
                reasons.append("file name is also a directory in this archive")
            if is_dir:
                dirs.add(key)
            elif key not in files:
                files[key] = name
            dirs.update(_dup_key(parts[:depth]) for depth in range(1, len(parts)))

        if not reasons:
            reasons.extend(_filesystem_problems(dest_real, parts, is_dir, zip_real))

        if reasons:
            offenders.append(name)
            problems.extend(f"{name!r}: {reason}" for reason in reasons)
        else:
            plan.append(_Member(info, parts, is_dir))

    if total > limits.max_total_bytes:
        problems.append(
            f"declared total of {total} bytes is over the limit of {limits.max_total_bytes}"
        )
    if problems:
        raise UnsafeArchiveError(zip_name, problems, offenders)
    return plan


def _filesystem_problems(
    dest_real: str, parts: tuple[str, ...], is_dir: bool, zip_real: str
) -> list[str]:
    """Where the member would land on disk: inside dest, on no file, not on the archive."""
    target = os.path.join(dest_real, *parts)
    # A directory would be created through existing links; a file's own name is replaced,
    # never followed, so only its folder must resolve inside.
    resolved = os.path.realpath(target if is_dir else os.path.dirname(target))
    if not _is_inside(dest_real, resolved):
        return ["resolves outside the destination"]
    link = _linked_folder(dest_real, parts if is_dir else parts[:-1])
    if link is not None:
        return [f"{link!r} is a symbolic link (never followed)"]
    for depth in range(1, len(parts)):
        ancestor = os.path.join(dest_real, *parts[:depth])
        if os.path.lexists(ancestor) and not os.path.isdir(ancestor):
            return [f"{'/'.join(parts[:depth])!r} exists and is not a directory"]
    if is_dir:
        if os.path.lexists(target) and not os.path.isdir(target):
            return ["exists and is not a directory"]
    else:
        if os.path.isdir(target):
            return ["would replace an existing directory"]
        if os.path.realpath(target) == zip_real:
            return ["would overwrite the archive itself"]
    return []


def _make_dirs(path: str, created: list[str]) -> None:
    """``os.makedirs`` that records every directory it creates, outermost first."""
    missing: list[str] = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
        else:
            created.append(directory)


@dataclass
class _Progress:
    total_bytes: int = 0


class _Folders:
    """The folders under the destination, opened a level at a time, never through a link.

    Each is opened once (up to `_MAX_OPEN_FOLDERS` at a time) and every file in it is made,
    moved and removed through that descriptor: a folder swapped for a link after the checks
    is never written through.
    """

    def __init__(self, root: SafeFolder, zip_name: str) -> None:
        self.root = root
        self.zip_name = zip_name
        self._open: dict[tuple[str, ...], SafeFolder] = {(): root}

    def get(
        self, parts: tuple[str, ...], member: str, created: list[tuple[str, ...]] | None
    ) -> SafeFolder:
        """``root/parts``; missing levels are made when ``created`` is given (and listed in it)."""
        found = self._open.get(parts)
        if found is not None:
            return found
        parent = self.get(parts[:-1], member, created)
        name = parts[-1]
        if created is not None and parent.mkdir(name):
            created.append(parts)
        try:
            folder = parent.child(name, create=False)
        except UnsafePathError as exc:
            where = "/".join(parts)
            if exc.link:
                raise IntegrityError(
                    f"zip archive {self.zip_name!r}: {member!r} would be written through "
                    f"the symbolic link {where!r}"
                ) from None
            raise IntegrityError(
                f"zip archive {self.zip_name!r}: {member!r} needs {where!r} to be a directory"
            ) from None
        if folder is None:
            raise FileNotFoundError(f"{os.path.join(self.root.path, *parts)} disappeared")
        if len(self._open) > _MAX_OPEN_FOLDERS:
            self._open = {(): self.root}
        self._open[parts] = folder
        return folder

    def find(self, parts: tuple[str, ...]) -> SafeFolder | None:
        """``root/parts`` if it can be opened (never through a link), for the cleanup."""
        try:
            return self.get(parts, "", None)
        except (OSError, IntegrityError):
            return None


def _write_member(
    zf: zipfile.ZipFile,
    member: _Member,
    folder: SafeFolder,
    zip_name: str,
    limits: _Limits,
    progress: _Progress,
    checkpoint: Callable[[], None] | None,
) -> str:
    """Stream one member into a new temporary file in ``folder``; return its name.

    On any failure the temporary file is removed before the exception propagates.
    """
    info = member.info
    temp = temporary_name(member.parts[-1])
    fd = folder.create(temp)
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_member(zf, info, out, zip_name, limits, progress, checkpoint)
    except BaseException:
        with contextlib.suppress(OSError):
            folder.unlink(temp)
        raise
    return temp


def _copy_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    out: BinaryIO,
    zip_name: str,
    limits: _Limits,
    progress: _Progress,
    checkpoint: Callable[[], None] | None,
) -> None:
    """Copy one member's bytes into ``out``, counting them and bounding the count."""
    try:
        source = zf.open(info)
    except _ARCHIVE_ERRORS as exc:
        raise IntegrityError(
            f"zip archive {zip_name!r}: cannot read member {info.orig_filename!r}: {exc}"
        ) from exc
    written = 0
    with source:
        while True:
            if checkpoint is not None:
                checkpoint()
            try:
                chunk = source.read(CHUNK_SIZE)
            except _ARCHIVE_ERRORS as exc:
                raise IntegrityError(
                    f"zip archive {zip_name!r}: member {info.orig_filename!r} is corrupt: {exc}"
                ) from exc
            if not chunk:
                break
            written += len(chunk)
            progress.total_bytes += len(chunk)
            if written > info.file_size:
                raise IntegrityError(
                    f"zip archive {zip_name!r}: member {info.orig_filename!r} is larger than "
                    f"the {info.file_size} bytes it declares"
                )
            if progress.total_bytes > limits.max_total_bytes:
                raise IntegrityError(
                    f"zip archive {zip_name!r}: more than {limits.max_total_bytes} bytes "
                    "decompressed"
                )
            out.write(chunk)
    if written != info.file_size:
        raise IntegrityError(
            f"zip archive {zip_name!r}: member {info.orig_filename!r} has {written} bytes, "
            f"not the {info.file_size} it declares"
        )


def _linked_folder(root: str, parts: Sequence[str]) -> str | None:
    """The first of the folders ``root/parts[0]``, ``root/parts[0]/parts[1]``, ... that is a
    symbolic link (to anywhere: even one that stays inside is never followed), if any."""
    for depth in range(1, len(parts) + 1):
        if os.path.islink(os.path.join(root, *parts[:depth])):
            return "/".join(parts[:depth])
    return None


def _remove_quietly(folders: _Folders, parts: tuple[str, ...], name: str) -> None:
    folder = folders.find(parts)
    if folder is not None:
        with contextlib.suppress(OSError):
            folder.unlink(name)


def _extract(
    zf: zipfile.ZipFile,
    plan: list[_Member],
    zip_name: str,
    root: SafeFolder,
    limits: _Limits,
    checkpoint: Callable[[], None] | None,
    dest_path: str | None = None,
) -> list[Path]:
    """Extract ``plan`` into ``root``; given ``dest_path``, refuse to go on once that path
    is no longer the folder ``root`` holds (swapped for a link or another folder)."""
    folders = _Folders(root, zip_name)
    root_id = _identity(root.stat())
    created_dirs: list[tuple[str, ...]] = []
    temps: list[tuple[tuple[str, ...], str]] = []  # (folder, temporary name)
    finals: list[tuple[tuple[str, ...], str]] = []  # (folder, final name)
    placed = 0  # how many of temps are already moved to finals
    progress = _Progress()
    try:
        for member in plan:
            if checkpoint is not None:
                checkpoint()
            name = member.info.orig_filename
            if dest_path is not None:
                _check_dest(dest_path, root_id, zip_name, name)
            if member.is_dir:
                folders.get(member.parts, name, created_dirs)
                continue
            where = member.parts[:-1]
            folder = folders.get(where, name, created_dirs)
            temps.append(
                (where, _write_member(zf, member, folder, zip_name, limits, progress, checkpoint))
            )
            finals.append((where, member.parts[-1]))
        if checkpoint is not None:
            checkpoint()
        # Everything is complete and verified: move it all into place.
        for (where, temp), (_, final) in zip(temps, finals, strict=True):
            folders.get(where, final, None).replace(temp, final)
            placed += 1
        return [Path(root.path, *where, final) for where, final in finals]
    except BaseException:
        # Synchronous cleanup only: it must also run after a cancellation.
        for where, temp in temps[placed:]:
            _remove_quietly(folders, where, temp)
        for where, final in finals[:placed]:
            _remove_quietly(folders, where, final)
        for parts in reversed(created_dirs):
            parent = folders.find(parts[:-1])
            if parent is not None:
                with contextlib.suppress(OSError):
                    parent.rmdir(parts[-1])
        raise


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _check_dest(path: str, identity: tuple[int, int], zip_name: str, member: str) -> None:
    """Refuse to go on once ``path`` no longer leads to the folder of this ``identity``."""
    try:
        same = _identity(os.stat(path)) == identity
    except OSError:
        same = False
    if not same:
        raise IntegrityError(
            f"zip archive {zip_name!r}: {member!r} would land outside the destination"
        )


def _limits(max_total_bytes: int, max_members: int, max_ratio: float) -> _Limits:
    if max_total_bytes < 0 or max_members < 0:
        raise ValueError("max_total_bytes and max_members must not be negative")
    if not max_ratio > 0:
        raise ValueError("max_ratio must be positive")
    return _Limits(max_total_bytes, max_members, max_ratio)


def _open_archive(source: str | BinaryIO, zip_name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except OSError:  # missing, unreadable, a directory: not a question of integrity
        raise
    except _ARCHIVE_ERRORS as exc:
        raise IntegrityError(f"{zip_name!r} is not a readable zip archive: {exc}") from exc


def safe_extract_sync(
    zip_path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_ratio: float = DEFAULT_MAX_RATIO,
    checkpoint: Callable[[], None] | None = None,
) -> list[Path]:
    """Blocking form of :func:`safe_extract`.

    ``checkpoint``, if given, is called before every member and every chunk is decompressed;
    whatever it raises aborts the extraction (with the same all-or-nothing cleanup) and
    propagates.
    """
    limits = _limits(max_total_bytes, max_members, max_ratio)
    zip_name = os.fspath(zip_path)
    dest_abs = os.path.abspath(os.fspath(dest_dir))
    dest_real = os.path.realpath(dest_abs)
    if os.path.lexists(dest_abs) and not os.path.isdir(dest_abs):
        raise NotADirectoryError(f"destination {dest_abs!r} exists and is not a directory")
    with _open_archive(zip_name, zip_name) as zf:
        plan = _validate(zf, zip_name, dest_real, limits, checkpoint)
        created: list[str] = []
        try:
            _make_dirs(dest_abs, created)
            # The destination itself is the caller's (a link to it is followed, once).
            root = SafeFolder.open(dest_abs)
            return _extract(zf, plan, zip_name, root, limits, checkpoint, dest_abs)
        except BaseException:
            for directory in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            raise


def extract_into_sync(
    folder: SafeFolder,
    zip_name: str,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_ratio: float = DEFAULT_MAX_RATIO,
    checkpoint: Callable[[], None] | None = None,
) -> list[Path]:
    """`safe_extract_sync` of the zip ``zip_name`` in the open ``folder``, into that folder.

    The archive is read and every member written through the folder's descriptor: a link
    in the archive's place or on the way to a member is never followed.
    """
    limits = _limits(max_total_bytes, max_members, max_ratio)
    shown = os.path.join(folder.path, zip_name)
    with (
        os.fdopen(folder.open_read(zip_name), "rb") as handle,
        _open_archive(handle, shown) as zf,
    ):
        plan = _validate(zf, shown, os.path.realpath(folder.path), limits, checkpoint)
        return _extract(zf, plan, shown, folder, limits, checkpoint)


async def extract_into(folder: SafeFolder, zip_name: str) -> list[Path]:
    """`extract_into_sync` in a worker thread (see `safe_extract` for what it refuses)."""
    work = functools.partial(
        extract_into_sync, folder, zip_name, checkpoint=anyio.from_thread.check_cancelled
    )
    return await anyio.to_thread.run_sync(work, abandon_on_cancel=False)


async def safe_extract(
    zip_path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> list[Path]:
    """Unpack the zip file ``zip_path`` into ``dest_dir``; return the extracted files' paths.

    Every member is checked first; if any is unsafe, `UnsafeArchiveError` (an
    `IntegrityError`) names all of them and nothing is written. Refused are: names that are
    absolute (``/x``, ``\\x``), carry a drive letter or any ``:``, contain a ``..`` segment
    (after treating ``\\`` as ``/``), a segment of only dots and spaces, a Windows device
    name, a control character, a segment over 255 bytes, or resolve outside ``dest_dir``
    (through existing links), onto an existing directory or onto the archive itself;
    symbolic links and other special files (unix mode in ``external_attr``); encrypted
    members and unsupported compression methods; a member of at least 1 MiB whose
    compression ratio is over ``max_ratio``; more than ``max_members`` members; a declared
    total over ``max_total_bytes``; and two members that would land on the same path on a
    case-insensitive file system (names compared after NFC, case folding and dropping
    trailing dots and spaces), or a file that is also used as a directory. Refusals raise
    before ``dest_dir`` is even created.

    Then the files are streamed, in chunks, into temporary files in their target folders
    (``dest_dir`` and subfolders are created as needed); the bytes actually decompressed are
    counted and bounded by each member's declared size and by ``max_total_bytes``, and
    zipfile's CRC check applies. A corrupt member raises `IntegrityError`. Only when every
    member is complete are all files moved into place with :func:`os.replace`, overwriting
    existing files of the same names.

    All-or-nothing: on any failure or cancellation the temporary files, the files this call
    already moved into place and the directories it created are removed (a pre-existing file
    that was already overwritten is not restored; that can only happen if a final rename
    fails). The returned list holds the files (not directories) in archive order.

    The work runs in a worker thread; cancellation is noticed between chunks, and the call
    returns only once the thread has cleaned up.
    """
    work = functools.partial(
        safe_extract_sync,
        zip_path,
        dest_dir,
        max_total_bytes=max_total_bytes,
        max_members=max_members,
        max_ratio=max_ratio,
        checkpoint=anyio.from_thread.check_cancelled,
    )
    return await anyio.to_thread.run_sync(work, abandon_on_cancel=False)
