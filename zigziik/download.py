"""Streaming, verified, atomic downloads.

A body is written in chunks to a hidden temporary file in the target folder (by zigziik's
disk thread, see `zigziik._diskwriter`, so receiving and writing overlap); only when its byte
count matches ``Content-Length`` (and the expected size, when known) and every chunk is on
disk is it moved to its final name with ``os.replace``. On any failure or cancellation the
temporary file is deleted with a plain synchronous call (after a cancellation every further
``await`` raises). Every file operation goes through the target folder's open descriptor
(`SafeFolder`): a folder swapped for a link meanwhile is never written through.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from pathlib import Path

import httpx
from anyio.lowlevel import checkpoint_if_cancelled

from ._bodies import close_response, plain_body
from ._direct import DirectReply
from ._diskwriter import BackgroundFile
from ._filenames import has_extension, picture_file_name, temporary_name
from ._safedir import SafeFolder
from ._stacks import remote_protocol_errors
from .errors import DecodeError, IncompleteBodyError, IntegrityError

__all__: list[str] = []  # the clients' machinery: nothing here is meant to be imported

_CANCEL_CHECK_BYTES = 8 << 20
INLINE_BYTES = 256 << 10
"""A body declared at most this long is written by the event loop's thread once complete.

Handing a small file to the disk thread (and waiting to be woken) costs more than writing
it: for many small pictures the hand-off, not the bytes, was the time each file took."""
_writev = getattr(os, "writev", None)

Progress = Callable[[int], None]
"""Called with the number of bytes just written."""
NameFor = Callable[[str | None], str]
"""The final file name, given the response's ``Content-Type`` (``None`` when it has none)."""


def ensure_folder(dest_dir: str | os.PathLike[str]) -> Path:
    """``dest_dir`` as a `Path`, created if missing; `NotADirectoryError` if it is a file."""
    path = Path(dest_dir)
    try:
        info = os.stat(path)  # one system call when the folder is there (every download)
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True)
        return path
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"dest_dir exists and is not a folder: {path}")
    return path


def content_length(response: httpx.Response) -> int | None:
    """The declared body length, or ``None`` when absent or not a single non-negative int."""
    return declared_length(response.headers.get("content-length"))


def declared_length(value: str | None) -> int | None:
    """A ``Content-Length`` value as an int, or ``None`` unless a single non-negative int."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def content_type(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("content-type")
    return value


def existing_complete_file(dest_dir: Path, name_without_type: str, size: int | None) -> Path | None:
    """A file already in ``dest_dir`` for this name with exactly ``size`` bytes, if any.

    A name without an extension gets its extension from the response's type, unknown before
    a request: then any ``name.<ext>`` of the right size counts.
    """
    if size is None:
        return None
    candidates = [dest_dir / name_without_type]
    if not has_extension(name_without_type):
        prefix = name_without_type + "."
        try:
            candidates = [p for p in dest_dir.iterdir() if p.name.startswith(prefix)]
        except OSError:
            return None
    return next((c for c in candidates if is_complete_file(c, size)), None)


def is_complete_file(path: Path, size: int) -> bool:
    """Whether ``path`` is a regular file (not a link to one) of exactly ``size`` bytes."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def picture_name_for(
    picture_id: int | str, original_file_name: str | None, known: str | None = None
) -> NameFor:
    """The final name of a picture, once the response's ``Content-Type`` is known; ``known``:
    the name already made (`fixed_picture_file_name`), when the type cannot change it."""
    if known is not None:
        return lambda _content_type: known

    def name(content_type: str | None) -> str:
        return picture_file_name(picture_id, original_file_name, content_type)

    return name


class _WrittenFile:
    """A small body already written and closed under its temporary name (`INLINE_BYTES`)."""

    def __init__(self, folder: SafeFolder, name: str) -> None:
        self.folder = folder
        self.name = name
        self._gone = False

    @property
    def path(self) -> Path:
        return self.folder.path / self.name

    async def close(self) -> None:
        """Nothing left to wait for (never yields to the event loop)."""

    def abort(self) -> None:
        if not self._gone:
            self._gone = True
            with contextlib.suppress(OSError):
                self.folder.unlink(self.name)


def _write_new_file(folder: SafeFolder, name: str, chunks: list[bytes]) -> _WrittenFile:
    """Create ``name`` in ``folder`` (it must not exist, never through a link) with ``chunks``."""
    fd = folder.create(name)
    try:
        try:
            if len(chunks) == 1 or _writev is None:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            else:
                total = sum(len(c) for c in chunks)
                written = _writev(fd, chunks)
                if written < total:  # rare on a regular file: the rest, one write at a time
                    rest = memoryview(b"".join(chunks))[written:]
                    while rest:
                        rest = rest[os.write(fd, rest) :]
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            folder.unlink(name)
        raise
    return _WrittenFile(folder, name)


class ReceivedFile:
    """A body received whole and checked, still on its way to disk under a temporary name.

    `finish` waits for the disk and moves the file to its final name; `abort` (synchronous)
    deletes it instead. One left alone is aborted when it is garbage-collected.
    """

    def __init__(
        self,
        file: BackgroundFile | _WrittenFile,
        final: Path | str,
        folder: SafeFolder | None = None,
    ) -> None:
        """``final``: the final path, or the final name in ``folder`` (where ``file`` is, to
        move it there; without a folder it is moved by path)."""
        self._file = file
        self._final = final
        self.name = final if isinstance(final, str) else final.name
        self._folder = folder
        self._settled = False

    @property
    def final(self) -> Path:
        """The final path (made when asked: a harvest needs only the name)."""
        final = self._final
        if isinstance(final, str):
            assert self._folder is not None  # a bare name is always one in a folder
            final = self._final = self._folder.path / final
        return final

    async def finish(self) -> Path:
        """The final path, once every byte is written and the file moved there.

        Cancelled while it waits for the disk, it deletes the file: a cancelled download
        leaves nothing, even when the disk had finished meanwhile.
        """
        await self.complete()
        return self.final

    async def complete(self) -> str:
        """`finish`, giving the final name (in the folder) rather than the path."""
        self._settled = True
        try:
            await self._file.close()
            # No await between the close and the move.
            if self._folder is not None:
                self._folder.replace(self._file.name, self.name)
            else:
                os.replace(self._file.path, self.final)
        except BaseException:
            self._file.abort()
            raise
        return self.name

    def abort(self) -> None:
        """Delete the temporary file (idempotent; leaves a finished file alone)."""
        self._settled = True
        self._file.abort()

    def __del__(self) -> None:
        if not self._settled:
            # At interpreter shutdown no thread can start to finish the job: then the
            # hidden temporary file is all that is left, never a file under a final name.
            with contextlib.suppress(RuntimeError):
                self._file.abort()


class FileReceiver:
    """A transport consumer that receives a successful response towards a file in an open
    folder (the file is made, checked and moved in it, never through a link).

    It returns a `ReceivedFile` to finish (the caller may first give up its place among the
    requests in flight: the disk has its own bound), or ``None`` for a 204 when
    ``no_content_ok``. It takes an ``httpx.Response`` or, from a client that sends direct
    (`zigziik._direct`), the `DirectReply` itself: the same checks either way.
    """

    __slots__ = ("_expected_size", "_folder", "_name_for", "_no_content_ok", "_progress")

    def __init__(
        self,
        folder: SafeFolder,
        name_for: NameFor,
        *,
        expected_size: int | None = None,
        progress: Progress | None = None,
        no_content_ok: bool = False,
    ) -> None:
        self._folder = folder
        self._name_for = name_for
        self._expected_size = expected_size
        self._progress = progress
        self._no_content_ok = no_content_ok

    async def __call__(self, response: httpx.Response) -> ReceivedFile | None:
        request = response.request
        if response.status_code == 204:
            self._no_content(request.method, str(request.url))
            return None
        url = str(request.url)
        plain = plain_body(response)
        if plain is not None:  # the bytes as they came: counted here, connection freed early

            async def release() -> None:
                await close_response(response)

            return await self._receive(url, response.headers, plain, None, release)
        # Decoded (Content-Encoding): the declared length is that of the encoded bytes.
        return await self._receive(
            url, response.headers, response.aiter_bytes(), lambda: response.num_bytes_downloaded
        )

    async def direct(self, reply: DirectReply, url: str) -> ReceivedFile | None:
        if reply.status_code == 204:
            self._no_content("GET", url)
            return None
        if "content-encoding" in reply.headers:  # httpx decodes it
            response = reply.as_response()
            try:
                return await self(response)
            finally:
                await close_response(response)

        async def release() -> None:
            reply.release()

        return await self._receive(url, reply.headers, reply, None, release)

    def _no_content(self, method: str, url: str) -> None:
        """A 204: fine when ``no_content_ok``, else a `DecodeError`."""
        if self._no_content_ok:
            return
        raise DecodeError(
            "the server answered 204 No Content where a file was expected", method=method, url=url
        )

    async def _receive(
        self,
        url: str,
        headers: Mapping[str, str],
        chunks: AsyncIterable[bytes],
        wire: Callable[[], int] | None,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> ReceivedFile:
        """``chunks`` towards the file; ``wire``: the bytes received as encoded (``None``: as
        written); ``release``: frees the connection once the body is read (else the caller)."""
        final = self._name_for(headers.get("content-type"))
        declared = declared_length(headers.get("content-length"))
        if declared is not None and declared <= INLINE_BYTES:
            return await self._receive_small(url, final, declared, chunks, wire, release)
        file = BackgroundFile(temporary_name(final), folder=self._folder)
        progress = self._progress
        complete = False
        try:
            written = 0
            check_at = _CANCEL_CHECK_BYTES
            try:
                # Chunks as the connection delivers them (at most about 1 MiB each from
                # zigziik's own client): re-cutting them to a fixed size costs a copy.
                async for chunk in chunks:
                    file.write(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                    if file.must_drain:
                        await file.drain()
                    elif written >= check_at:
                        # A long body can arrive without the connection ever waiting: stop
                        # here if the caller was cancelled meanwhile (yields only then).
                        check_at = written + _CANCEL_CHECK_BYTES
                        await checkpoint_if_cancelled()
            except remote_protocol_errors() as exc:
                received = written if wire is None else wire()
                if declared is not None and received < declared:
                    raise IncompleteBodyError(
                        f"GET {url}: the connection ended after {received} of "
                        f"{declared} bytes (Content-Length)"
                    ) from exc
                raise
            if release is not None:
                await release()  # frees the connection while the disk catches up
            received = written if wire is None else wire()
            self._check(url, final, declared, received, written)
            complete = True
            return ReceivedFile(file, final, self._folder)
        finally:
            if not complete:
                file.abort()

    async def _receive_small(
        self,
        url: str,
        final: str,
        declared: int,
        chunks_in: AsyncIterable[bytes],
        wire: Callable[[], int] | None,
        release: Callable[[], Awaitable[None]] | None,
    ) -> ReceivedFile:
        """A body of at most `INLINE_BYTES`: received into memory, checked, then written at
        once."""
        progress = self._progress
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in chunks_in:
                if type(chunk) is not bytes:
                    chunk = bytes(chunk)
                chunks.append(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(len(chunk))
                # Content-Length counts what came on the wire, not the decoded bytes.
                if (received if wire is None else wire()) > declared:
                    break  # longer than it said: refused below, without reading the rest
        except remote_protocol_errors() as exc:
            got = received if wire is None else wire()
            if got < declared:
                raise IncompleteBodyError(
                    f"GET {url}: the connection ended after {got} of "
                    f"{declared} bytes (Content-Length)"
                ) from exc
            raise
        if release is not None:
            await release()
        self._check(url, final, declared, received if wire is None else wire(), received)
        written = _write_new_file(self._folder, temporary_name(final), chunks or [b""])
        return ReceivedFile(written, final, self._folder)

    def _check(
        self, url: str, final: str, declared: int | None, received: int, written: int
    ) -> None:
        """The body's length against ``Content-Length`` and the expected size."""
        if declared is not None and received != declared:
            raise IncompleteBodyError(
                f"GET {url}: received {received} bytes, Content-Length said {declared}"
            )
        expected = self._expected_size
        if expected is not None and written != expected:
            raise IntegrityError(
                f"GET {url}: received {written} bytes, the picture's size is "
                f"{expected}; not saved as {final}"
            )


def receive_to_file(
    dest_dir: SafeFolder,
    name_for: NameFor,
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
    no_content_ok: bool = False,
) -> FileReceiver:
    """A `FileReceiver` into ``dest_dir`` (an open folder)."""
    return FileReceiver(
        dest_dir,
        name_for,
        expected_size=expected_size,
        progress=progress,
        no_content_ok=no_content_ok,
    )


class FileWriter:
    """A transport consumer that streams a successful response into a file and moves it
    to its final name: the final path, or ``None`` for a 204 when ``no_content_ok``."""

    __slots__ = ("_receive",)

    def __init__(self, receive: FileReceiver) -> None:
        self._receive = receive

    async def __call__(self, response: httpx.Response) -> Path | None:
        received = await self._receive(response)
        return None if received is None else await received.finish()

    async def direct(self, reply: DirectReply, url: str) -> Path | None:
        received = await self._receive.direct(reply, url)
        return None if received is None else await received.finish()


def stream_to_file(
    dest_dir: SafeFolder,
    name_for: NameFor,
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
    no_content_ok: bool = False,
) -> FileWriter:
    """A `FileWriter` into ``dest_dir`` (an open folder)."""
    return FileWriter(
        receive_to_file(
            dest_dir,
            name_for,
            expected_size=expected_size,
            progress=progress,
            no_content_ok=no_content_ok,
        )
    )
