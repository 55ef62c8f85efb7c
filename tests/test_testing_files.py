"""The fakes' file generators: exact sizes, valid structure, streamed zips."""

from __future__ import annotations

import importlib
import io
import re
import struct
import zipfile
from typing import Any

import pytest

from zigziik.testing import GeneratedFile, make_jpeg, make_pdf, make_swf
from zigziik.testing._files import (
    ZipEntry,
    crc32_of,
    image_size,
    sniff_content_type,
    zip_chunks,
    zip_length,
)

Image: Any
try:  # Pillow is optional: with it, the JPEGs are decoded too
    Image = importlib.import_module("PIL.Image")
except ImportError:  # pragma: no cover
    Image = None


def jpeg_segments(data: bytes) -> list[int]:
    """Walk a JPEG's marker segments up to SOS; return the markers seen (fill bytes allowed)."""
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    markers = []
    i = 2
    while True:
        assert data[i] == 0xFF, i
        while data[i + 1] == 0xFF:  # fill bytes
            i += 1
        marker = data[i + 1]
        markers.append(marker)
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
        if marker == 0xDA:
            return markers


SIZES = [1, 161, 162, 163, 164, 165, 200, 999, 4_096, 65_536, 65_541, 131_074, 200_001]


@pytest.mark.parametrize("size", SIZES)
def test_jpeg_has_the_exact_size_and_a_valid_structure(size: int) -> None:
    generated = GeneratedFile("jpeg", size, seed=size)
    data = generated.to_bytes()
    assert len(data) == generated.size == max(size, 161)
    markers = jpeg_segments(data)
    assert markers[0] == 0xE0 and markers[-4:] == [0xC0, 0xC4, 0xC4, 0xDA]
    assert set(markers[1:-5]) <= {0xFE}  # padding is COM segments
    assert image_size(data) == generated.dimensions
    if Image is not None:
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.size == generated.dimensions


def test_jpegs_differ_by_seed() -> None:
    assert make_jpeg(5_000, seed=1) != make_jpeg(5_000, seed=2)
    assert make_jpeg(5_000, seed=1) == make_jpeg(5_000, seed=1)
    assert GeneratedFile("jpeg", 50_000, 1, portrait=True).dimensions[0] < 2048


@pytest.mark.parametrize("size", [1, 700, 999, 1_000, 1_001, 9_999, 10_000, 123_456])
def test_pdf_has_the_exact_size_and_a_correct_xref(size: int) -> None:
    data = make_pdf(size)
    assert len(data) == max(size, len(make_pdf(1)))
    assert data.startswith(b"%PDF-1.4") and data.endswith(b"%%EOF\n")
    match = re.search(rb"startxref\n(\d+)\n%%EOF\n$", data)
    assert match is not None
    xref = int(match.group(1))
    assert data[xref : xref + 4] == b"xref"
    entries = data[xref:].split(b"\n")[3:9]
    for number, entry in enumerate(entries, start=1):
        offset = int(entry[:10])
        assert data[offset:].startswith(b"%d 0 obj" % number)


@pytest.mark.parametrize("size", [1, 100, 65_000])
def test_swf(size: int) -> None:
    data = make_swf(size)
    assert data.startswith(b"FWS") and data[3] == 10
    assert struct.unpack("<I", data[4:8])[0] == len(data) == max(size, 48)
    assert data.endswith(b"\x40\x00\x00\x00")  # ShowFrame, End


def test_sniff() -> None:
    assert sniff_content_type(make_jpeg(500)) == "image/jpeg"
    assert sniff_content_type(make_pdf(800)) == "application/pdf"
    assert sniff_content_type(make_swf(100)) == "application/x-shockwave-flash"
    assert sniff_content_type(b"hello") == "application/octet-stream"
    assert image_size(b"hello") == (0, 0)


def test_zip_is_exact_and_keeps_names() -> None:
    files = [
        ("IMG_0001.jpg", GeneratedFile("jpeg", 3_000, 1)),
        ("IMG_0001.jpg", GeneratedFile("jpeg", 2_000, 2)),
        ("../../etc/passwd.jpg", GeneratedFile("pdf", 1_000, 3)),
        ("Ærø.swf", GeneratedFile("swf", 70_000, 4)),
    ]
    entries = [ZipEntry(n, g.size, crc32_of(g.chunks()), g.chunks()) for n, g in files]
    data = b"".join(zip_chunks(entries))
    assert len(data) == zip_length((n, g.size) for n, g in files)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist() == [n for n, _ in files]
    for info, (_, generated) in zip(archive.infolist(), files, strict=True):
        assert archive.read(info) == generated.to_bytes()
        assert info.compress_type == zipfile.ZIP_STORED
