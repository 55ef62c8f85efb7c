"""Deterministic, valid JPEG / PDF / SWF files of an exact size, and a streaming zip writer.

Every generator works in two steps: a small *layout* (a few header and trailer byte strings plus
the length of a padding region) is computed up front, and the bytes are produced chunk by chunk
by ``chunks()``. A 300 MB picture therefore never exists in memory at once: the padding is a
pseudo-random 64 KiB block, repeated.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

__all__ = [
    "CONTENT_TYPES",
    "FileKind",
    "GeneratedFile",
    "ZipEntry",
    "crc32_of",
    "image_size",
    "make_jpeg",
    "make_pdf",
    "make_swf",
    "sniff_content_type",
    "zip_chunks",
    "zip_length",
]

FileKind = Literal["jpeg", "pdf", "swf"]

CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "pdf": "application/pdf",
    "swf": "application/x-shockwave-flash",
}

CHUNK = 64 * 1024
_COM_MAX = 65533  # largest payload of one JPEG segment (its length field counts itself)

# Realistic camera-ish sizes, largest first; a JPEG gets the largest one its byte budget allows.
_JPEG_DIMENSIONS = (
    (2048, 1365),
    (1920, 1280),
    (1600, 1067),
    (1280, 853),
    (1024, 683),
    (800, 533),
    (640, 427),
    (480, 320),
    (320, 213),
    (240, 160),
    (160, 107),
    (120, 80),
    (64, 43),
    (32, 21),
    (16, 11),
    (8, 8),
)


def _random_block(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(max(0, min(n, _COM_MAX)))


def _repeat(block: bytes, n: int) -> Iterator[bytes]:
    """Yield ``n`` bytes made of ``block`` repeated, in chunks of at most ``len(block)``."""
    if n <= 0:
        return
    if not block:
        block = b"\x00"
    while n > 0:
        piece = block if n >= len(block) else block[:n]
        n -= len(piece)
        yield piece


# --------------------------------------------------------------------------------------------
# JPEG
# --------------------------------------------------------------------------------------------


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.nbits = 0

    def write(self, value: int, nbits: int) -> None:
        for i in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.nbits += 1
            if self.nbits == 8:
                self._emit()

    def _emit(self) -> None:
        self.out.append(self.acc)
        if self.acc == 0xFF:
            self.out.append(0x00)  # byte stuffing inside entropy-coded data
        self.acc = 0
        self.nbits = 0

    def flush(self) -> bytes:
        if self.nbits:
            pad = 8 - self.nbits
            self.acc = (self.acc << pad) | ((1 << pad) - 1)  # pad with 1 bits
            self.nbits = 8
            self._emit()
        return bytes(self.out)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(payload) + 2) + payload


def _jpeg_body(width: int, height: int, dc: int) -> bytes:
    """Everything after the padding: tables, frame, one scan of a flat grey image, EOI.

    Huffman tables are minimal: DC has two codes (category 0 -> ``0``, category ``c`` -> ``10``),
    AC only the end-of-block code ``0``. The first block carries the grey level; every other
    block is "same DC, all AC zero", i.e. two bits.
    """
    assert dc != 0
    category = abs(dc).bit_length()
    quant = bytes([0]) + bytes([16] * 64)  # 8-bit table 0, every coefficient divided by 16
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    dht_dc = bytes([0x00]) + bytes([1, 1] + [0] * 14) + bytes([0, category])
    dht_ac = bytes([0x10]) + bytes([1] + [0] * 15) + bytes([0x00])
    sos = bytes([1, 1, 0x00, 0, 63, 0])
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    bits = _BitWriter()
    bits.write(0b10, 2)
    bits.write(dc if dc > 0 else dc + (1 << category) - 1, category)
    bits.write(0, 1)  # EOB
    # The remaining blocks are all zero bits: write whole zero bytes quickly.
    remaining = 2 * (blocks - 1)
    while remaining and bits.nbits:
        bits.write(0, 1)
        remaining -= 1
    if bits.nbits:  # tiny image: everything fits in the first bytes
        scan = bits.flush()
    else:
        tail = _BitWriter()
        tail.write(0, remaining % 8)
        scan = bytes(bits.out) + bytes(remaining // 8) + tail.flush()
    return (
        _segment(0xDB, quant)
        + _segment(0xC0, sof)
        + _segment(0xC4, dht_dc)
        + _segment(0xC4, dht_ac)
        + _segment(0xDA, sos)
        + scan
        + b"\xff\xd9"
    )


_JPEG_HEAD = b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")


def _jpeg_layout(size: int, seed: int, portrait: bool) -> tuple[bytes, int, int, int]:
    """Return (body, padding, width, height) for a JPEG of (at least) ``size`` bytes."""
    dc = random.Random(seed).choice([d for d in range(-60, 61) if d])
    for w, h in _JPEG_DIMENSIONS:
        if portrait:
            w, h = h, w
        body = _jpeg_body(w, h, dc)
        padding = size - len(_JPEG_HEAD) - len(body)
        if padding >= 0 or (w, h) == (8, 8):
            return body, max(0, padding), w, h
    raise AssertionError("unreachable")  # pragma: no cover


def _com_padding(n: int, seed: int) -> Iterator[bytes]:
    """``n`` bytes of JPEG COM segments (or 1-3 ``0xFF`` fill bytes, which JPEG allows)."""
    if n <= 0:
        return
    if n < 4:
        yield b"\xff" * n
        return
    count = -(-n // (_COM_MAX + 4))
    payload = n - 4 * count
    block = _random_block(seed, payload)
    for i in range(count):
        part = payload // count + (1 if i < payload % count else 0)
        yield struct.pack(">HH", 0xFFFE, part + 2)
        yield from _repeat(block, part)


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------

_PDF_OBJECTS = (
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
    b" /Resources << /Font << /F1 5 0 R >> >> >>",
    None,  # content stream, filled in below
    b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
)


def _pdf_parts(title: str, extra: int, padding: int) -> tuple[bytes, bytes]:
    text = title.encode("latin-1", "replace").replace(b"\\", b"\\\\")
    text = text.replace(b"(", b"\\(").replace(b")", b"\\)")
    content = b"BT /F1 24 Tf 72 760 Td (" + text + b") Tj ET"
    head = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3" + b" " * extra + b"\n")
    offsets = []
    for number, body in enumerate(_PDF_OBJECTS, start=1):
        offsets.append(len(head))
        if body is None:
            body = b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"
        head += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    offsets.append(len(head))
    head += b"6 0 obj\n<< /Length %d >>\nstream\n" % padding
    tail = b"\nendstream\nendobj\n"
    xref_at = len(head) + padding + len(tail)
    tail += b"xref\n0 7\n0000000000 65535 f \n"
    tail += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    tail += b"trailer\n<< /Size 7 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(head), tail


def _pdf_layout(size: int, title: str) -> tuple[bytes, int, bytes]:
    """Return (head, padding, tail) of a one-page PDF padded by an unused stream object 6."""
    for extra in range(4):
        head, tail = _pdf_parts(title, extra, 0)
        guess = size - len(head) - len(tail)
        for padding in range(max(0, guess - 40), max(0, guess) + 1):
            head, tail = _pdf_parts(title, extra, padding)
            if len(head) + padding + len(tail) == size:
                return head, padding, tail
    head, tail = _pdf_parts(title, 0, 0)  # asked for less than the smallest document
    return head, 0, tail


# --------------------------------------------------------------------------------------------
# SWF
# --------------------------------------------------------------------------------------------


def _swf_rect(xmax: int, ymax: int) -> bytes:
    nbits = max(xmax, ymax).bit_length() + 1  # signed values
    raw = nbits
    for value in (0, xmax, 0, ymax):
        raw = (raw << nbits) | value
    total = 5 + 4 * nbits
    nbytes = -(-total // 8)
    return (raw << (nbytes * 8 - total)).to_bytes(nbytes, "big")


def _swf_layout(size: int) -> tuple[bytes, int, bytes]:
    """Return (head, padding, tail) of an SWF 10 movie padded by a DefineBinaryData tag."""
    movie = _swf_rect(550 * 20, 400 * 20) + struct.pack("<HH", 24 << 8, 1)
    file_attributes = struct.pack("<HI", (69 << 6) | 4, 0)
    background = struct.pack("<H", (9 << 6) | 3) + bytes([0x1E, 0x50, 0x8C])
    tail = struct.pack("<H", 1 << 6) + struct.pack("<H", 0)  # ShowFrame, End
    fixed = 8 + len(movie) + len(file_attributes) + len(background) + 6 + 6 + len(tail)
    padding = max(0, size - fixed)
    total = fixed + padding
    head = (
        b"FWS"
        + bytes([10])
        + struct.pack("<I", total)
        + movie
        + file_attributes
        + background
        + struct.pack("<HI", (87 << 6) | 0x3F, 6 + padding)
        + struct.pack("<HI", 1, 0)
    )
    return head, padding, tail


# --------------------------------------------------------------------------------------------
# Public description of one generated file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedFile:
    """A deterministic file of an exact size, produced lazily.

    ``size`` is raised to the smallest valid file of that kind when asked for less (about 160
    bytes for a JPEG, 600 for a PDF, 50 for an SWF).
    """

    kind: FileKind
    requested_size: int
    seed: int
    portrait: bool = False
    title: str = "Plantegning"

    @cached_property
    def _layout(self) -> tuple[bytes, int, bytes, int, int]:
        if self.kind == "jpeg":
            body, padding, w, h = _jpeg_layout(self.requested_size, self.seed, self.portrait)
            return _JPEG_HEAD, padding, body, w, h
        if self.kind == "pdf":
            head, padding, tail = _pdf_layout(self.requested_size, self.title)
            return head, padding, tail, 0, 0
        head, padding, tail = _swf_layout(self.requested_size)
        return head, padding, tail, 550, 400

    @property
    def content_type(self) -> str:
        """The MIME type the fake serves this file with."""
        return CONTENT_TYPES[self.kind]

    @property
    def size(self) -> int:
        """The exact byte length."""
        head, padding, tail, _, _ = self._layout
        return len(head) + padding + len(tail)

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height): pixels for a JPEG, the stage for an SWF, (0, 0) for a PDF."""
        _, _, _, w, h = self._layout
        return w, h

    def chunks(self) -> Iterator[bytes]:
        """Yield the file's bytes in chunks of at most 64 KiB."""
        head, padding, tail, _, _ = self._layout
        yield head
        if self.kind == "jpeg":
            yield from _com_padding(padding, self.seed)
        else:
            yield from _repeat(_random_block(self.seed, min(padding, CHUNK)), padding)
        yield tail

    def to_bytes(self) -> bytes:
        """The whole file in memory (fine for small files; prefer ``chunks()``)."""
        return b"".join(self.chunks())


def make_jpeg(size: int = 2048, *, seed: int = 0, portrait: bool = False) -> bytes:
    """A valid baseline JPEG of exactly ``size`` bytes (padded with COM segments)."""
    return GeneratedFile("jpeg", size, seed, portrait).to_bytes()


def make_pdf(size: int = 1024, *, seed: int = 0, title: str = "Plantegning") -> bytes:
    """A valid one-page PDF of exactly ``size`` bytes."""
    return GeneratedFile("pdf", size, seed, title=title).to_bytes()


def make_swf(size: int = 256, *, seed: int = 0) -> bytes:
    """A valid uncompressed SWF (``FWS``) movie of exactly ``size`` bytes."""
    return GeneratedFile("swf", size, seed).to_bytes()


def sniff_content_type(data: bytes) -> str:
    """Guess a MIME type from magic bytes (JPEG, PDF, SWF, PNG), else octet-stream."""
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"%PDF"):
        return "application/pdf"
    if data[:3] in (b"FWS", b"CWS", b"ZWS"):
        return "application/x-shockwave-flash"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return "application/octet-stream"


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) read from a JPEG's SOF or a PNG's IHDR; (0, 0) when unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if not data.startswith(b"\xff\xd8"):
        return 0, 0
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return 0, 0
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3) and i + 9 <= len(data):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        if marker in (0xDA, 0xD9):
            return 0, 0
        i += 2 + length
    return 0, 0


# --------------------------------------------------------------------------------------------
# Zip (stored, no compression, streamed)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipEntry:
    """One member of a streamed zip: its name, size, CRC-32 and a way to produce its bytes."""

    name: str
    size: int
    crc: int
    chunks: Iterable[bytes]
    date_time: tuple[int, int, int, int, int, int] = (2024, 1, 1, 12, 0, 0)


def _dos_time(dt: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = dt
    date = ((max(year, 1980) - 1980) << 9) | (month << 5) | day
    time = (hour << 11) | (minute << 5) | (second // 2)
    return time, date


def _zip_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def zip_length(entries: Iterable[tuple[str, int]]) -> int:
    """The exact byte length of the zip ``zip_chunks`` produces for (name, size) members."""
    total = 22
    for name, size in entries:
        n = len(_zip_name(name))
        total += 30 + n + size + 46 + n
    return total


def zip_chunks(entries: list[ZipEntry]) -> Iterator[bytes]:
    """Yield a stored (uncompressed) zip of ``entries``, names kept exactly as given.

    The CRCs must be known up front (no data descriptors), which keeps the archive readable by
    every unzip tool. Duplicate and hostile names are written as they are: that is the point.
    """
    central = bytearray()
    offset = 0
    for entry in entries:
        name = _zip_name(entry.name)
        time, date = _dos_time(entry.date_time)
        flags = 0x800  # names are UTF-8
        local = struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            flags,
            0,
            time,
            date,
            entry.crc,
            entry.size,
            entry.size,
            len(name),
            0,
        )
        yield local + name
        written = 0
        crc = 0
        for chunk in entry.chunks:
            written += len(chunk)
            crc = zlib.crc32(chunk, crc)
            yield chunk
        if written != entry.size or crc != entry.crc:
            raise ValueError(f"zip member {entry.name!r} changed while being written")
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                flags,
                0,
                time,
                date,
                entry.crc,
                entry.size,
                entry.size,
                len(name),
                0,
                0,
                0,
                0,
                0o100644 << 16,
                offset,
            )
            + name
        )
        offset += len(local) + len(name) + entry.size
    yield bytes(central)
    yield struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), offset, 0
    )


def crc32_of(chunks: Iterable[bytes]) -> int:
    """CRC-32 of a chunked byte stream."""
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    return crc
