"""Safe local file names: hostile examples with exact outputs, and properties for any text."""

from __future__ import annotations

import os
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zigziik._filenames import (
    extension_for_content_type,
    fixed_picture_file_name,
    has_extension,
    is_reserved_name,
    picture_file_name,
    sanitize_component,
    temporary_name,
)

# --------------------------------------------------------------------------------------------
# Exact outputs for hostile names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # path traversal and absolute paths: only the last segment survives
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32", "system32"),
        ("/abs/x.jpg", "x.jpg"),
        ("\\\\server\\share\\x.jpg", "x.jpg"),
        ("C:\\evil.jpg", "evil.jpg"),
        ("C:evil.jpg", "C_evil.jpg"),
        ("dir/", "file"),
        ("a/../b.jpg", "b.jpg"),
        # Windows device names, with extensions, any case, superscript digits
        ("con.jpg", "_con.jpg"),
        ("CON", "_CON"),
        ("NUL", "_NUL"),
        ("nul.tar.gz", "_nul.tar.gz"),
        ("Com1.txt", "_Com1.txt"),
        ("LPT9", "_LPT9"),
        ("COM\u00b9.jpg", "_COM\u00b9.jpg"),
        ("lpt\u00b3", "_lpt\u00b3"),
        ("CON .txt", "_CON .txt"),
        ("conin$", "_conin$"),
        ("aux.", "_aux"),
        ("console.jpg", "console.jpg"),
        ("com10.txt", "com10.txt"),
        ("auxiliary", "auxiliary"),
        # NUL and control characters
        ("a\x00b.jpg", "a_b.jpg"),
        ("evil.php\x00.jpg", "evil.php_.jpg"),
        ("tab\there\nnew.jpg", "tab_here_new.jpg"),
        ("\x7fdel\x85c1.jpg", "_del_c1.jpg"),
        ("line\u2028sep.jpg", "line_sep.jpg"),
        ("\udc80bad.jpg", "_bad.jpg"),
        # characters Windows forbids, NTFS streams
        ('a<b>c:d"e|f?g*h.jpg', "a_b_c_d_e_f_g_h.jpg"),
        ("file.jpg:Zone.Identifier", "file.jpg_Zone.Identifier"),
        # bidi overrides and zero-width characters
        ("\u202egpj.exe", "gpj.exe"),
        ("photo\u202e\u2066gnp.exe\u2069", "photognp.exe"),
        ("a\u200b\u200c\u200d\ufeffb.jpg", "ab.jpg"),
        ("\u200f\u200e.jpg", "jpg"),
        # dots and spaces
        ("", "file"),
        (".", "file"),
        ("..", "file"),
        ("...", "file"),
        (". . .", "file"),
        ("   ", "file"),
        (".hidden", "hidden"),
        ("name. ", "name"),
        ("  lead.jpg", "lead.jpg"),
        ("trail.jpg...", "trail.jpg"),
        ("\u3000wide\u3000", "wide"),
        # Unicode normalisation to NFC
        ("e\u0301.jpg", "\u00e9.jpg"),
        ("A\u030a", "\u00c5"),
        # ordinary names stay as they are
        ("IMG_0001.JPG", "IMG_0001.JPG"),
        ("Villa på 120 m² (stue).jpg", "Villa på 120 m² (stue).jpg"),
        ("ægte øl.tar.gz", "ægte øl.tar.gz"),
    ],
)
def test_sanitize_component_hostile_examples(name: str, expected: str) -> None:
    assert sanitize_component(name) == expected


def test_sanitize_component_long_names() -> None:
    assert sanitize_component("x" * 300) == "x" * 200
    assert sanitize_component("x" * 300 + ".jpg") == "x" * 196 + ".jpg"
    # cut on a character boundary: "é" is two bytes in UTF-8
    assert sanitize_component("é" * 150 + ".jpg") == "é" * 98 + ".jpg"
    assert sanitize_component("€" * 100) == "€" * 66  # 198 bytes; a 67th would need 201
    # an over-long "extension" is not preserved
    assert sanitize_component("a." + "x" * 300) == "a." + "x" * 198
    assert sanitize_component("x" * 300 + ".jpg", max_bytes=16) == "x" * 12 + ".jpg"
    # truncation never leaves a trailing dot or space
    assert sanitize_component("ab" + " " * 20 + "cd", max_bytes=16) == "ab"
    # truncation cannot expose a device name
    assert sanitize_component("CON" + "x" * 100, max_bytes=16) == "CON" + "x" * 13
    assert sanitize_component("con." + "x" * 20, max_bytes=16) == "_con." + "x" * 11
    assert sanitize_component("CON" + " " * 20 + "x", max_bytes=16) == "_CON"


def test_sanitize_component_rejects_tiny_bound() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        sanitize_component("x", max_bytes=15)


@pytest.mark.parametrize(
    ("picture_id", "original", "content_type", "expected"),
    [
        (7, "IMG_0001.JPG", "image/jpeg", "7-IMG_0001.JPG"),
        (7, "IMG_0001", "image/jpeg", "7-IMG_0001.jpg"),
        (7, "IMG_0001", None, "7-IMG_0001"),
        (7, "plan", "application/x-shockwave-flash", "7-plan.swf"),
        (7, "plan", "application/pdf; charset=binary", "7-plan.pdf"),
        (7, "Vej 12.5", "image/jpeg", "7-Vej 12.5.jpg"),
        (7, "photo.jpg", "application/pdf", "7-photo.jpg"),
        (7, None, "image/jpeg", "7.jpg"),
        (7, None, None, "7"),
        (7, "", "application/pdf", "7.pdf"),
        (7, "...", "image/png", "7.png"),
        (7, "\u202e", None, "7"),
        (7, "../../etc/passwd", None, "7-passwd"),
        (7, "..\\..\\windows\\system32", "image/jpeg", "7-system32.jpg"),
        (7, "C:\\evil.jpg", None, "7-evil.jpg"),
        (7, "/abs/x.jpg", None, "7-x.jpg"),
        (7, "con.jpg", None, "7-con.jpg"),
        (7, "NUL", "image/jpeg", "7-NUL.jpg"),
        (7, "a\x00b.jpg", None, "7-a_b.jpg"),
        (7, ".hidden", None, "7-hidden"),
        (7, "\u202egpj.exe", None, "7-gpj.exe"),
        (123456789, "a.jpg", None, "123456789-a.jpg"),
        ("7", "a.jpg", None, "7-a.jpg"),
        ("AB", "a.jpg", None, "_41_42-a.jpg"),
        ("../x", "a.jpg", None, "_2e_2e_2fx-a.jpg"),
        ("a-b", "c.jpg", None, "a_2db-c.jpg"),
        ("a", "b-c.jpg", None, "a-b-c.jpg"),
        (-5, "a.jpg", None, "_2d5-a.jpg"),
        ("", "a.jpg", None, "_-a.jpg"),
        ("con", None, "image/jpeg", "co_6e.jpg"),
        ("com1", None, None, "com_31"),
        ("é", None, None, "_c3_a9"),
    ],
)
def test_picture_file_name_examples(
    picture_id: int | str, original: str | None, content_type: str | None, expected: str
) -> None:
    assert picture_file_name(picture_id, original, content_type) == expected


def test_picture_file_name_long_names() -> None:
    assert picture_file_name(7, "x" * 300 + ".jpg", "image/jpeg") == "7-" + "x" * 194 + ".jpg"
    assert picture_file_name(7, "x" * 300, "image/jpeg") == "7-" + "x" * 194 + ".jpg"
    assert picture_file_name(7, "x" * 300, None) == "7-" + "x" * 198
    assert picture_file_name(7, "x" * 300, None, max_bytes=100) == "7-" + "x" * 98
    long_id = picture_file_name("x" * 100, "a.jpg")
    assert re.fullmatch(r"_h[0-9a-f]{32}-a\.jpg", long_id)
    assert picture_file_name("x" * 101, "a.jpg") != long_id


def test_picture_file_name_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError):
        picture_file_name(True, "a.jpg")
    with pytest.raises(TypeError):
        picture_file_name(1.5, "a.jpg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 80"):
        picture_file_name(1, "a.jpg", max_bytes=79)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/jpeg", ".jpg"),
        ("image/jpg", ".jpg"),
        ("image/pjpeg", ".jpg"),
        ("IMAGE/JPEG", ".jpg"),
        ("image/jpeg; charset=binary", ".jpg"),
        ("  Image/Jpeg ;q=1", ".jpg"),
        ("image/png", ".png"),
        ("image/gif", ".gif"),
        ("image/webp", ".webp"),
        ("image/tiff", ".tif"),
        ("image/heic", ".heic"),
        ("application/pdf", ".pdf"),
        ("application/x-shockwave-flash", ".swf"),
        ("application/vnd.adobe.flash.movie", ".swf"),
        ("application/zip", ".zip"),
        ("application/x-zip-compressed", ".zip"),
        ("video/mp4", ".mp4"),
        ("video/quicktime", ".mov"),
        ("application/octet-stream", ".bin"),
        ("text/plain; charset=utf-8", ".txt"),
        (None, ".bin"),
        ("", ".bin"),
        ("garbage", ".bin"),
        ("application/x-msdownload", ".bin"),  # no .exe from a server's say-so
        ("application/x-sh", ".bin"),
        ("image/../../x", ".bin"),
    ],
)
def test_extension_for_content_type(content_type: str | None, expected: str) -> None:
    assert extension_for_content_type(content_type) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("photo.jpg", True),
        ("a.JPEG", True),
        ("clip.mp4", True),
        ("a.7z", True),
        ("x.tar.gz", True),
        ("photo", False),
        (".jpg", False),
        ("photo.", False),
        ("Vej 12.5", False),
        ("x.123", False),
        ("x.jp g", False),
        ("x.averyveryverylongext", False),
        ("x.jpé", False),
        ("", False),
    ],
)
def test_has_extension(name: str, expected: bool) -> None:
    assert has_extension(name) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CON", True),
        ("con.txt", True),
        ("Prn.x.y", True),
        ("AUX ", True),
        ("COM0", True),
        ("lpt9.jpg", True),
        ("COM\u00b2", True),
        ("CONOUT$", True),
        ("CONX", False),
        ("_CON", False),
        ("COM10", False),
        ("xcon", False),
        ("", False),
    ],
)
def test_is_reserved_name(name: str, expected: bool) -> None:
    assert is_reserved_name(name) is expected


def test_temporary_name() -> None:
    first = temporary_name("7-photo.jpg")
    assert re.fullmatch(r"\.7-photo\.jpg\.[0-9a-f]{16}\.part", first)
    assert temporary_name("7-photo.jpg") != first
    long_name = temporary_name("é" * 100)  # 200 bytes
    assert len(long_name.encode()) < 255
    longer = temporary_name("x" * 255)
    assert len(longer.encode()) < 255
    for bad in ("", "a/b", "a\\b", "a\x00b"):
        with pytest.raises(ValueError, match="single file-name component"):
            temporary_name(bad)


# --------------------------------------------------------------------------------------------
# Properties for any text

HOSTILE_FRAGMENTS = [
    "/",
    "\\",
    "..",
    ".",
    " ",
    "C:",
    "c:\\",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\u2028",
    "con",
    "NUL",
    "COM\u00b9",
    "LPT1",
    ".jpg",
    ".JPEG",
    ".tar.gz",
    '<>:"|?*',
    "e\u0301",
    "\u00e9",
    "\U0001f600",
    "\u0301",
    "~",
    "$",
    "x" * 60,
    "\u20ac" * 40,
]

hostile_text = st.lists(
    st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE_FRAGMENTS)), max_size=12
).map("".join)
long_text = st.builds(
    "".join,
    st.tuples(
        st.text(min_size=40, max_size=300),
        st.sampled_from(["", ".jpg", ".JPEG", ".tar.gz", ".x", ".y" * 5, "." + "y" * 9, ".z" * 10]),
        st.sampled_from(["", " ", ".", " . ", "\u0301"]),
    ),
)
# small alphabets make collisions and device names likely enough for hypothesis to try them
small_text = st.text(alphabet="aAbB-._/\\ :cCoOnNlLpPtTuUxX1\u00b9$", max_size=8)
any_text = st.one_of(
    st.text(),
    hostile_text,
    long_text,
    small_text,
    st.text(st.characters(exclude_categories=())),  # lone surrogates too
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "image/jpeg",
            "application/pdf",
            "application/x-shockwave-flash",
            "image/x-unknown",
            "video/mp4",
            "image/svg+xml; charset=utf-8",
            "",
        ]
    ),
    st.text(max_size=30),
)
picture_ids = st.one_of(
    st.integers(min_value=0),
    st.integers(),
    st.text(max_size=60),
    small_text,
    st.sampled_from(["con", "CON", "nul", "com1", "lpt\u00b9", "conin$", "aux", "7", "07", "a-b"]),
    any_text,
)

FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
DEST = os.path.join(os.path.sep, "srv", "harvest", "order")


def assert_safe_component(name: str, max_bytes: int) -> None:
    assert name
    assert name not in (".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert "\x00" not in name
    assert not set('<>:"|?*') & set(name)
    assert all(unicodedata.category(ch) not in FORBIDDEN_CATEGORIES for ch in name)
    assert not name.startswith(".")
    assert not name[0].isspace()
    assert not name.endswith(".")
    assert not name[-1].isspace()
    assert not is_reserved_name(name)
    assert len(name.encode("utf-8")) <= max_bytes
    assert unicodedata.normalize("NFC", name) == name
    joined = os.path.normpath(os.path.join(DEST, name))
    assert os.path.dirname(joined) == DEST
    assert os.path.basename(joined) == name


@settings(max_examples=600, deadline=None)
@given(any_text, st.integers(min_value=16, max_value=300))
def test_sanitize_component_is_always_safe(text: str, max_bytes: int) -> None:
    name = sanitize_component(text, max_bytes=max_bytes)
    assert_safe_component(name, max_bytes)
    assert sanitize_component(name, max_bytes=max_bytes) == name  # idempotent


@settings(max_examples=600, deadline=None)
@given(picture_ids, st.one_of(st.none(), any_text), content_types, st.integers(80, 300))
def test_picture_file_name_is_always_safe(
    picture_id: int | str, original: str | None, content_type: str | None, max_bytes: int
) -> None:
    name = picture_file_name(picture_id, original, content_type, max_bytes=max_bytes)
    assert_safe_component(name, max_bytes)
    if isinstance(picture_id, int) and picture_id >= 0:
        assert re.match(rf"{picture_id}(\Z|[-.])", name)


@settings(max_examples=600, deadline=None)
@given(
    picture_ids,
    picture_ids,
    st.one_of(st.none(), any_text),
    st.one_of(st.none(), any_text),
    content_types,
    content_types,
)
def test_different_ids_never_share_a_name(
    id_a: int | str,
    id_b: int | str,
    original_a: str | None,
    original_b: str | None,
    type_a: str | None,
    type_b: str | None,
) -> None:
    if str(id_a) == str(id_b):
        return
    name_a = picture_file_name(id_a, original_a, type_a)
    name_b = picture_file_name(id_b, original_b, type_b)
    assert name_a != name_b
    # not even on a case-insensitive, normalising file system
    fold_a = unicodedata.normalize("NFC", name_a).casefold()
    fold_b = unicodedata.normalize("NFC", name_b).casefold()
    assert fold_a != fold_b


@settings(max_examples=500, deadline=None)
@given(small_text, small_text, st.one_of(st.none(), small_text), content_types)
def test_ids_cannot_be_forged_by_moving_text(
    head: str, tail: str, original: str | None, content_type: str | None
) -> None:
    # Text moved between the id and the original name must not give another picture's name.
    forged = picture_file_name(head, f"{tail}-{original or ''}", content_type)
    assert picture_file_name(f"{head}-{tail}", original, content_type) != forged
    assert picture_file_name(f"{head}-{tail}", None, content_type) != forged
    for ext in (".jpg", f".{tail}"):
        assert picture_file_name(head + ext, None, None) != picture_file_name(
            head, None, content_type
        )
    # nor ids that differ only in case, on a case-insensitive file system
    if head.upper() != head.lower():
        upper = picture_file_name(head.upper(), original, content_type).casefold()
        assert upper != picture_file_name(head.lower(), original, content_type).casefold()


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=10**12), any_text, content_types)
def test_picture_file_name_keeps_or_adds_an_extension(
    picture_id: int, original: str, content_type: str | None
) -> None:
    name = picture_file_name(picture_id, original, content_type)
    if picture_file_name(picture_id, original, None) == str(picture_id):
        # the original sanitises to nothing: "<id><ext>"
        ext = extension_for_content_type(content_type) if content_type is not None else ""
        assert name == f"{picture_id}{ext}"
        return
    cleaned = sanitize_component(original, max_bytes=100_000)
    if has_extension(cleaned):
        assert name.endswith(cleaned[cleaned.rfind(".") :])
    elif content_type is not None:
        assert name.endswith(extension_for_content_type(content_type))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.none(), any_text))
def test_extension_for_content_type_is_always_a_safe_extension(content_type: str | None) -> None:
    assert re.fullmatch(r"\.[a-z0-9]{1,8}", extension_for_content_type(content_type))


@settings(max_examples=300, deadline=None)
@given(any_text, st.integers(min_value=16, max_value=255))
def test_temporary_name_is_hidden_bounded_and_unique(text: str, max_bytes: int) -> None:
    final = sanitize_component(text, max_bytes=max_bytes)
    temp = temporary_name(final)
    assert temp.startswith(".")
    assert temp.endswith(".part")
    assert "/" not in temp
    assert "\\" not in temp
    assert len(temp.encode("utf-8")) < 255
    assert temp != final
    assert temporary_name(final) != temp


def test_the_plain_ascii_fast_path_agrees_with_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names the fast path accepts come out exactly as the full rules would make them."""
    import random

    from zigziik import _filenames

    class Never:
        def fullmatch(self, _text: str) -> None:
            return None

    alphabet = [chr(i) for i in range(128)] + ["é", "Å", "\u200b", "\u202e", "\u2028"]
    common = "aZ9. -_.CONnulcom1"
    rnd = random.Random(5)
    names = [
        "".join(
            rnd.choice(alphabet if rnd.random() < 0.3 else common) for _ in range(rnd.randint(0, 8))
        )
        for _ in range(20_000)
    ]
    names += ["CON", "con.jpg", "a", ".", "..", " a", "a ", "a.", "x y.jpg", "LPT1.txt"]
    fast = {(n, d): _filenames._clean(n, defuse_reserved=d) for n in names for d in (True, False)}
    assert sum(1 for n in names if _filenames._PLAIN_NAME_RE.fullmatch(n)) > 1000
    monkeypatch.setattr(_filenames, "_PLAIN_NAME_RE", Never())
    slow = {(n, d): _filenames._clean(n, defuse_reserved=d) for n in names for d in (True, False)}
    assert fast == slow


# --------------------------------------------------------------------------------------------
# Edges the properties above reach only by chance (each found by a surviving mutant)


def test_paragraph_and_line_separators_become_underscores() -> None:
    assert sanitize_component("a\u2029b\u2028c") == "a_b_c"
    assert picture_file_name(1, "x\u2029y.jpg") == "1-x_y.jpg"


def test_an_id_with_a_lone_surrogate_is_escaped_not_refused() -> None:
    assert picture_file_name("\ud800", None) == "_ed_a0_80"
    assert picture_file_name("a\udcffb", "x.jpg") == "a_ed_b3_bfb-x.jpg"
    long_id = "\ud800" * 20  # over the direct encoding's bound: hashed, from its raw bytes
    hashed = picture_file_name(long_id, None)
    assert hashed.startswith("_h") and len(hashed) == 34
    assert picture_file_name("\udc00" * 20, None) != hashed


def test_the_id_is_encoded_directly_up_to_40_bytes_then_hashed() -> None:
    assert picture_file_name("a" * 40, None) == "a" * 40
    longer = picture_file_name("a" * 41, None)
    assert longer.startswith("_h") and len(longer) == 34
    assert picture_file_name("_" * 10, None) == "_5f" * 10  # 30 bytes, kept


@pytest.mark.parametrize("wrong", [1.5, None, b"7", True])
def test_a_picture_id_of_another_type_is_a_type_error_naming_it(wrong: object) -> None:
    with pytest.raises(TypeError) as caught:
        picture_file_name(wrong, None)  # type: ignore[arg-type]
    assert str(caught.value) == f"picture_id must be an int or a str, not {type(wrong).__name__}"


def test_cut_utf8_keeps_the_longest_prefix_on_a_character_boundary() -> None:
    from zigziik._filenames import _cut_utf8

    assert _cut_utf8("ab", 0) == "" and _cut_utf8("ab", -1) == ""
    assert _cut_utf8("ab", 1) == "a" and _cut_utf8("ab", 2) == "ab"
    assert _cut_utf8("\u00e9a", 1) == "" and _cut_utf8("\u00e9a", 2) == "\u00e9"


def test_rstrip_dots_and_spaces_can_strip_everything() -> None:
    from zigziik._filenames import _rstrip_dots_and_spaces

    assert _rstrip_dots_and_spaces("...") == ""
    assert _rstrip_dots_and_spaces(". ") == ""
    assert _rstrip_dots_and_spaces("a. .") == "a"
    assert _rstrip_dots_and_spaces("") == ""


def test_truncate_at_its_limits() -> None:
    from zigziik._filenames import _truncate

    assert _truncate("abcdef.jpg", 8) == "abcd.jpg"  # a stem of 4 bytes still keeps the extension
    assert _truncate("abcdef.jpg", 7) == "abcdef"  # a stem of 3 would be too short: cut whole
    assert _truncate("ab. ", 4) == "ab. "  # what fits is left alone, even its dots and spaces


def test_the_media_type_is_before_the_first_semicolon() -> None:
    assert extension_for_content_type("image/jpeg; charset=x; q=1") == ".jpg"
    assert extension_for_content_type("IMAGE/PNG ;x") == ".png"


def test_unlisted_media_types_fall_back_to_mimetypes_non_strict_lowercased(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mimetypes

    def guess(media_type: str, strict: bool = True) -> str | None:
        known = {"image/x-zz": ".ZZT", "video/x-zz": ".exe-ish", "text/x-zz": ".txt"}
        return None if strict else known.get(media_type)

    monkeypatch.setattr(mimetypes, "guess_extension", guess)
    assert extension_for_content_type("image/x-zz") == ".zzt"
    assert extension_for_content_type("video/x-zz") == ".bin"  # not a short safe extension
    assert extension_for_content_type("text/x-zz") == ".bin"  # only media types fall back
    assert extension_for_content_type("audio/x-none") == ".bin"


def test_reserved_names_ignore_trailing_spaces_only() -> None:
    assert is_reserved_name("CON  ") and is_reserved_name("nul .txt")
    assert not is_reserved_name("CON\u00a0") and not is_reserved_name("AUX\t")


def test_temporary_names_are_reseeded_in_a_forked_child() -> None:
    from zigziik import _filenames

    state = _filenames._temporary_random.getstate()
    _filenames._reseed_after_fork()
    assert _filenames._temporary_random.getstate() != state
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next name, then out without cleanup
        os.write(write, temporary_name("x").encode())
        os._exit(0)
    os.close(write)
    mine = temporary_name("x")
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read().decode()
    os.waitpid(pid, 0)
    assert theirs.startswith(".x.") and theirs != mine


@given(picture_ids, st.one_of(st.none(), any_text), st.integers(80, 300))
def test_a_fixed_picture_name_is_the_name_whatever_the_content_type(
    picture_id: int | str, original: str | None, max_bytes: int
) -> None:
    """`fixed_picture_file_name` (the harvest names a file before its response with it) is
    `picture_file_name` for every type when it gives a name, and gives none when a type
    could change the name."""
    fixed = fixed_picture_file_name(picture_id, original, max_bytes=max_bytes)
    names = {
        picture_file_name(picture_id, original, kind, max_bytes=max_bytes)
        for kind in (None, "image/jpeg", "application/pdf", "image/x-zz")
    }
    if fixed is not None:
        assert names == {fixed}
    else:
        assert len(names) > 1


def test_a_fixed_picture_name_needs_an_original_name_with_an_extension() -> None:
    assert fixed_picture_file_name(7, "IMG_0001.JPG") == "7-IMG_0001.JPG"
    assert fixed_picture_file_name(7, "../x/con.jpg") == picture_file_name(7, "../x/con.jpg")
    assert fixed_picture_file_name(7, "Facade") is None
    assert fixed_picture_file_name(7, None) is None
    assert fixed_picture_file_name(7, "") is None
    with pytest.raises(ValueError, match="max_bytes must be at least"):
        fixed_picture_file_name(7, "a.jpg", max_bytes=10)
