"""Safe local file names from server-given data (pure functions, no I/O).

Everything the Zigna API tells us about a file (``originalFileName``, ``pictureID``,
``Content-Type``) is untrusted. The functions here turn it into a single file-name component
that is safe to join to a destination folder on Linux, macOS and Windows alike.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import random
import re
import secrets
import unicodedata

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FALLBACK_NAME",
    "extension_for_content_type",
    "has_extension",
    "is_reserved_name",
    "picture_file_name",
    "sanitize_component",
    "temporary_name",
]

#: Default bound, in UTF-8 bytes, of a generated name (255 is the usual per-component limit).
DEFAULT_MAX_BYTES = 200
#: What an otherwise empty name becomes.
FALLBACK_NAME = "file"

# A kept extension is "." plus 1-9 ASCII letters/digits with at least one letter.
_MAX_EXT_BYTES = 10
_EXT_RE = re.compile(r"\.[A-Za-z0-9]{1,9}\Z")
_EXT_HAS_LETTER_RE = re.compile(r"[A-Za-z]")
# Smallest accepted ``max_bytes``: room for the longest kept extension plus a 4-byte character,
# and for the ``"_"`` that defuses a reserved name.
_MIN_COMPONENT_BYTES = 16
# Encoded picture ids longer than this are replaced by a digest.
_MAX_ID_BYTES = 40
_MIN_PICTURE_BYTES = 80
# ``temporary_name`` embeds at most this many bytes of the final name.
_MAX_TEMP_EMBED_BYTES = 200

_WINDOWS_INVALID = frozenset('<>:"|?*')
_SEPARATORS_RE = re.compile(r"[/\\]")
# Printable ASCII without separators, Windows-invalid characters, and dots or spaces at the
# ends: the names most servers send, which only the device-name rule can change.
_PLAIN_NAME_RE = re.compile(
    r'[^\x00-\x20."*/:<>?\\|\x7f-\U0010ffff](?:[^\x00-\x1f"*/:<>?\\|\x7f-\U0010ffff]*'
    r'[^\x00-\x20."*/:<>?\\|\x7f-\U0010ffff])?'
)
_ID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")

_SUPERSCRIPT_DIGITS = "\u00b9\u00b2\u00b3"
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{prefix}{digit}" for prefix in ("COM", "LPT") for digit in "0123456789"}
    | {f"{prefix}{digit}" for prefix in ("COM", "LPT") for digit in _SUPERSCRIPT_DIGITS}
)

# The core table: never left to the machine-dependent ``mimetypes`` database.
_CONTENT_TYPE_EXTENSIONS: dict[str, str] = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/x-png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/tiff": ".tif",
    "image/tif": ".tif",
    "image/bmp": ".bmp",
    "image/x-ms-bmp": ".bmp",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/avif": ".avif",
    "image/svg+xml": ".svg",
    "image/x-icon": ".ico",
    "image/vnd.microsoft.icon": ".ico",
    "application/pdf": ".pdf",
    "application/x-pdf": ".pdf",
    "application/x-shockwave-flash": ".swf",
    "application/vnd.adobe.flash.movie": ".swf",
    "application/futuresplash": ".swf",
    "application/zip": ".zip",
    "application/x-zip-compressed": ".zip",
    "application/x-zip": ".zip",
    "application/json": ".json",
    "application/xml": ".xml",
    "application/octet-stream": ".bin",
    "text/plain": ".txt",
    "text/csv": ".csv",
    "text/xml": ".xml",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/mpeg": ".mpg",
    "video/x-msvideo": ".avi",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
}
# Only media types fall back to ``mimetypes``, so a server cannot talk us into ``.exe``/``.bat``.
_FALLBACK_MAJOR_TYPES = ("image/", "video/", "audio/")
_SAFE_GUESSED_EXT_RE = re.compile(r"\.[a-z0-9]{1,8}\Z")
_UNKNOWN_EXTENSION = ".bin"


def extension_for_content_type(content_type: str | None) -> str:
    """Return the file extension (with its dot) for a ``Content-Type`` header value.

    Parameters (``; charset=...``), surrounding spaces and case are ignored. Common types come
    from a fixed table (``image/jpeg`` → ``.jpg``, ``application/pdf`` → ``.pdf``, Flash →
    ``.swf``, ``application/zip`` → ``.zip``, ...); other ``image/``, ``video/`` and ``audio/``
    types fall back to :func:`mimetypes.guess_extension` when it offers a short lowercase
    alphanumeric extension. Anything else, or no content type, gives ``.bin``.
    """
    if not content_type:
        return _UNKNOWN_EXTENSION
    media_type = content_type.split(";", 1)[0].strip().lower()
    known = _CONTENT_TYPE_EXTENSIONS.get(media_type)
    if known is not None:
        return known
    if media_type.startswith(_FALLBACK_MAJOR_TYPES):
        guessed = mimetypes.guess_extension(media_type, strict=False)
        if guessed is not None:
            guessed = guessed.lower()
            if _SAFE_GUESSED_EXT_RE.match(guessed):
                return guessed
    return _UNKNOWN_EXTENSION


def has_extension(name: str) -> bool:
    """Tell whether ``name`` ends in a short, safe extension worth keeping.

    That is a ``.`` after a non-empty stem, followed by 1 to 9 ASCII letters or digits of which
    at least one is a letter (``photo.jpg``, ``clip.mp4``, ``a.7z``; not ``Vej 12.5``,
    ``.hidden``, ``x.tar~`` or ``x.averyveryverylongext``).
    """
    dot = name.rfind(".")
    if dot <= 0:
        return False
    ext = name[dot:]
    return bool(_EXT_RE.match(ext) and _EXT_HAS_LETTER_RE.search(ext))


def is_reserved_name(name: str) -> bool:
    """Tell whether Windows treats ``name`` as a device (``CON``, ``nul.txt``, ``COM¹``, ...).

    The part before the first dot, without trailing spaces, is compared case-insensitively to
    CON, PRN, AUX, NUL, CONIN$, CONOUT$, CLOCK$, COM0-COM9, LPT0-LPT9 and COM¹²³/LPT¹²³.
    """
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _RESERVED_NAMES


def _is_dot_or_space(char: str) -> bool:
    return char == "." or char.isspace()


def _strip_dots_and_spaces(text: str) -> str:
    start = 0
    end = len(text)
    while start < end and _is_dot_or_space(text[start]):
        start += 1
    while end > start and _is_dot_or_space(text[end - 1]):
        end -= 1
    return text[start:end]


def _rstrip_dots_and_spaces(text: str) -> str:
    end = len(text)
    while end > 0 and _is_dot_or_space(text[end - 1]):
        end -= 1
    return text[:end]


def _replace_char(char: str) -> str:
    if char in _WINDOWS_INVALID:
        return "_"
    # Cc: C0, DEL, C1 controls. Cs: lone surrogates (not encodable). Zl/Zp: line breaks.
    if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
        return "_"
    return char


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form is at most ``max_bytes`` bytes."""
    if max_bytes <= 0:
        return ""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _truncate(name: str, max_bytes: int) -> str:
    """Bound ``name`` to ``max_bytes`` UTF-8 bytes, keeping a short extension if possible."""
    if _utf8_len(name) <= max_bytes:
        return name
    if has_extension(name):
        dot = name.rfind(".")
        ext = name[dot:]
        stem_budget = max_bytes - len(ext)  # the extension is ASCII
        if stem_budget >= 4:
            stem = _cut_utf8(name[:dot], stem_budget)
            if stem:
                return stem + ext
    return _rstrip_dots_and_spaces(_cut_utf8(name, max_bytes))


def _clean(name: str, *, defuse_reserved: bool = True) -> str:
    """Every rule of :func:`sanitize_component` except the length bound and the fallback."""
    if _PLAIN_NAME_RE.fullmatch(name):  # steps 1 to 5 leave printable plain ASCII alone
        return "_" + name if defuse_reserved and is_reserved_name(name) else name
    # 1. Drop format characters: bidi overrides/isolates/marks, zero-width chars, BOM, ...
    text = "".join(ch for ch in name if unicodedata.category(ch) != "Cf")
    # 2. Canonical composition.
    text = unicodedata.normalize("NFC", text)
    # 3. Only the last path segment, for both separators.
    text = _SEPARATORS_RE.split(text)[-1]
    # 4. Controls, surrogates, line separators and Windows-invalid characters become "_"
    #    (so a drive letter "C:x" becomes "C_x" and an NTFS stream "a:b" becomes "a_b").
    text = "".join(_replace_char(ch) for ch in text)
    # 5. No leading or trailing dots and white space: this also removes "." and "..".
    text = _strip_dots_and_spaces(text)
    # 6. Windows device names get a "_" in front.
    if defuse_reserved and is_reserved_name(text):
        text = "_" + text
    return text


def _bound(text: str, max_bytes: int) -> str:
    text = _truncate(text, max_bytes)
    if is_reserved_name(text):  # truncation could in theory expose one ("CONx" → "CON")
        text = _truncate("_" + text, max_bytes)
    return text


def sanitize_component(name: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Turn any server-given string into one safe file-name component.

    The rules, in order:

    1. Unicode format characters (category Cf: bidi overrides and isolates, LRM/RLM, zero-width
       space/joiners, BOM, soft hyphen, ...) are removed.
    2. The text is normalised to NFC.
    3. Only the last segment is kept when split on ``/`` and on ``\\``.
    4. Control characters (C0, DEL, C1), lone surrogates, U+2028/U+2029 and the characters
       Windows forbids (``< > : " | ? *``) are each replaced by ``_``; this neutralises drive
       letters (``C:x`` → ``C_x``) and NTFS streams.
    5. Leading and trailing dots and white space are stripped (so no hidden names, no ``.`` or
       ``..``, no names Windows would silently trim).
    6. A Windows device name (see :func:`is_reserved_name`: ``CON``, ``nul.txt``, ``COM¹``, ...)
       gets a ``_`` in front.
    7. The result is cut to at most ``max_bytes`` bytes of UTF-8 on a character boundary; a
       short extension (see :func:`has_extension`) is kept and the stem shortened instead.
    8. An empty result becomes ``"file"``.

    ``max_bytes`` must be at least 16.
    """
    if max_bytes < _MIN_COMPONENT_BYTES:
        raise ValueError(f"max_bytes must be at least {_MIN_COMPONENT_BYTES}, not {max_bytes}")
    text = _bound(_clean(name), max_bytes)
    return text or FALLBACK_NAME


def _encode_id(picture_id: int | str) -> str:
    """An injective, case-insensitively distinct encoding of a picture id.

    The result only contains ``a-z``, ``0-9`` and ``_``, so it can never contain the ``-`` or
    ``.`` that follow it in a file name: distinct ids always give distinct names. Non-negative
    integers (and strings of lowercase letters and digits) are kept as they are; any other
    character is
    written as ``_`` plus two lowercase hex digits per UTF-8 byte. Over-long ids become ``_h``
    plus a SHA-256 prefix (never produced by the direct encoding, where ``_`` is always
    followed by hex digits).
    """
    if isinstance(picture_id, bool) or not isinstance(picture_id, (int, str)):
        raise TypeError(f"picture_id must be an int or a str, not {type(picture_id).__name__}")
    text = str(picture_id)
    raw = text.encode("utf-8", "surrogatepass")
    parts: list[str] = []
    for ch in text:
        if ch in _ID_SAFE:
            parts.append(ch)
        else:
            parts.extend(f"_{byte:02x}" for byte in ch.encode("utf-8", "surrogatepass"))
    encoded = "".join(parts)
    if not encoded:
        encoded = "_"  # the empty id; "_" alone is never produced otherwise
    if len(encoded) > _MAX_ID_BYTES:
        return "_h" + hashlib.sha256(raw).hexdigest()[:32]
    if is_reserved_name(encoded):
        # "con" → "co_6e": still decodes to the same id, and no other id encodes to it.
        encoded = encoded[:-1] + f"_{ord(encoded[-1]):02x}"
    return encoded


def picture_file_name(
    picture_id: int | str,
    original_file_name: str | None,
    content_type: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> str:
    """The local file name of a picture: ``"<id>-<sanitised original name>"``.

    The id prefix keeps pictures with the same original name apart; the id is server data too,
    so it is encoded to ``a-z0-9_`` (non-negative integers stay as they are, other characters become
    ``_xx`` hex escapes) and two different ids never give the same name, even on a
    case-insensitive file system. The original name goes through :func:`sanitize_component`.
    When it has no extension (see :func:`has_extension`) and ``content_type`` is given,
    :func:`extension_for_content_type` is appended. Without an original name (``None``, or one
    that sanitises to nothing) the name is ``"<id><ext>"``, or just ``"<id>"`` with no
    content type. The whole is at most ``max_bytes`` UTF-8 bytes (at least 80).
    """
    id_part, original = _picture_parts(picture_id, original_file_name, max_bytes)
    if not original:
        ext = extension_for_content_type(content_type) if content_type is not None else ""
        return id_part + ext
    ext = ""
    if content_type is not None and not has_extension(original):
        ext = extension_for_content_type(content_type)
    budget = max_bytes - len(id_part) - 1 - len(ext)
    original = _truncate(original, budget)
    return f"{id_part}-{original}{ext}"


def fixed_picture_file_name(
    picture_id: int | str, original_file_name: str | None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> str | None:
    """:func:`picture_file_name` when it is the same whatever the ``Content-Type`` (the
    original name has an extension), else ``None``: known before the response."""
    id_part, original = _picture_parts(picture_id, original_file_name, max_bytes)
    if not original or not has_extension(original):
        return None
    return f"{id_part}-{_truncate(original, max_bytes - len(id_part) - 1)}"


def _picture_parts(
    picture_id: int | str, original_file_name: str | None, max_bytes: int
) -> tuple[str, str]:
    """The encoded id and the cleaned original name (``""`` without one)."""
    if max_bytes < _MIN_PICTURE_BYTES:
        raise ValueError(f"max_bytes must be at least {_MIN_PICTURE_BYTES}, not {max_bytes}")
    id_part = _encode_id(picture_id)
    # The "<id>-" prefix already keeps "con.jpg" from being a device name.
    original = (
        _clean(original_file_name, defuse_reserved=False) if original_file_name is not None else ""
    )
    return id_part, original


def temporary_name(final_name: str) -> str:
    """A hidden, unique temporary name beside ``final_name``, for atomic writes.

    ``".{final_name}.{16 random hex digits}.part"``, with ``final_name`` cut to at most 200 UTF-8
    bytes so the result stays below 255 bytes. ``final_name`` must be a single component.
    """
    if not final_name or _SEPARATORS_RE.search(final_name) or "\x00" in final_name:
        raise ValueError(f"not a single file-name component: {final_name!r}")
    embedded = _cut_utf8(final_name, _MAX_TEMP_EMBED_BYTES)
    return f".{embedded}.{_temporary_random.getrandbits(64):016x}.part"


# Seeded from the system's randomness once per process (and again in a forked child): a
# system call per name cost several percent of a small file's time. Uniqueness is all that
# is needed (the file is created with O_EXCL), not secrecy.
_temporary_random = random.Random(secrets.randbits(128))


def _reseed_after_fork() -> None:
    _temporary_random.seed(secrets.randbits(128))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)
