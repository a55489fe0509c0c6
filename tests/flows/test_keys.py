"""Key rules (``tasks.keys``): the seed's layout, and what a path, file name or key may contain."""

from __future__ import annotations

import unicodedata

import pytest

from tasks.errors import InvalidKeyError
from tasks.keys import MAX_KEY_BYTES, clip_filename, make_key, normalize_prefix, validate_filename


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Project Name/Video Title/videos/temp/", "Project Name/Video Title/videos/temp/"),
        ("Project Name/Video Title/videos/temp", "Project Name/Video Title/videos/temp/"),
        ("a//", "a/"),  # trailing slashes collapse to one
        ("", ""),
        ("Canal Ação/Vídeo +1 100%/日本語", "Canal Ação/Vídeo +1 100%/日本語/"),
    ],
)
def test_prefix_is_normalised_with_one_trailing_slash(path: str, expected: str) -> None:
    assert normalize_prefix(path) == expected


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/abs/path/", "start with '/'"),
        ("/", "start with '/'"),
        ("a/../b/", r"'\.\.' segment"),
        ("../b", r"'\.\.' segment"),
        ("a/./b", r"'\.' or"),
        ("a//b/", "empty"),
        ("a\\b/", "separator"),
        ("a\x00b/", "control character"),
        ("a\nb/", "control character"),
        ("a\x7fb/", "control character"),
        ("a\u2028b/", "control character"),
    ],
)
def test_prefix_refuses_escapes_and_control_characters(path: str, reason: str) -> None:
    with pytest.raises(InvalidKeyError, match=reason):
        normalize_prefix(path)


def test_keys_are_nfc_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "Ação/Vídeo")
    assert decomposed != "Ação/Vídeo"
    key = make_key(decomposed, "video_1.mp4")
    assert key == "Ação/Vídeo/video_1.mp4"
    assert unicodedata.is_normalized("NFC", key)


def test_seed_layout_video_n_and_output_filename() -> None:
    assert clip_filename(1) == "video_1.mp4"
    assert clip_filename(12) == "video_12.mp4"
    assert make_key("P/V/videos/temp/", clip_filename(3)) == "P/V/videos/temp/video_3.mp4"
    assert make_key("P/V/", validate_filename("final cut é.mp4")) == "P/V/final cut é.mp4"
    assert make_key("", "video_1.mp4") == "video_1.mp4"


@pytest.mark.parametrize("name", ["a.mp4", "My Video (1).mp4", "vídeo 日本.mp4", "x+y%20.MP4"])
def test_output_filename_plain_names_accepted(name: str) -> None:
    assert validate_filename(name) == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize(
    "name", ["", ".mp4", "a/b.mp4", "a\\b.mp4", "..", ".", "video.mov", "video.mp4 ", "a\tb.mp4", "v\x00.mp4"]
)
def test_output_filename_refused(name: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_filename(name)


def _prefix(total_bytes: int, char: str = "a") -> str:
    """A path of ``total_bytes`` UTF-8 bytes made of names short enough for any filesystem (<= 100 chars)."""
    width = len(char.encode())
    parts, left = [], total_bytes
    while left > 0:
        n = min(100, left // width) if left > 100 * width + 1 else left // width
        parts.append(char * n)
        left -= n * width + 1
    return "/".join(parts)


def test_key_length_limit_counts_utf8_bytes() -> None:
    filename = "video_1.mp4"
    prefix = _prefix(MAX_KEY_BYTES - len(filename) - 1)
    assert len(make_key(prefix, filename).encode()) == MAX_KEY_BYTES
    with pytest.raises(InvalidKeyError, match="1024-byte"):
        make_key(prefix + "a", filename)
    # '日' is 3 bytes in UTF-8: ~340 characters are fine as characters but not as bytes
    with pytest.raises(InvalidKeyError, match="bytes in UTF-8"):
        make_key("/".join(["日" * 60] * 6), filename)  # 1080 + 5 + 1 + 11 bytes


def test_filename_with_control_character_refused_in_make_key() -> None:
    with pytest.raises(InvalidKeyError, match="control character"):
        make_key("ok/", "bad\x1b.mp4")
