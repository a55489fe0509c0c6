"""Object keys: the seed's layout (``<path>/video_N.mp4`` or ``<path>/<output_filename>``), validated.

The same rules apply to local folders (key = relative path under the renders root) and S3 buckets, so
a key that is safe in one is safe in the other.
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidKeyError

#: S3's limit on a key, in UTF-8 bytes (AWS S3 user guide, "Naming objects").
MAX_KEY_BYTES = 1024
#: Longest path segment or file name, in UTF-8 bytes: Linux's NAME_MAX (255) less room for the hidden
#: temporary name the local storage writes first (``.<name>.<random>.part``, 16 bytes more).
MAX_SEGMENT_BYTES = 200


def _check_segment(segment: str, what: str) -> None:
    size = len(segment.encode("utf-8"))
    if size > MAX_SEGMENT_BYTES:
        raise InvalidKeyError(f"{what} has a {size}-byte name; at most {MAX_SEGMENT_BYTES} bytes per name (UTF-8)")


def _check_chars(value: str, what: str) -> None:
    for ch in value:
        if unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029":
            raise InvalidKeyError(f"{what} contains a control character (U+{ord(ch):04X})")


def normalize_prefix(path: str) -> str:
    """Validate an output prefix (the seed's ``path``) and return it NFC-normalised with one trailing ``/``.

    Spaces and non-ASCII are allowed. Empty means "bucket root".

    Raises:
        InvalidKeyError: leading ``/``, a ``..`` or ``.`` segment, an empty segment (``//``), or a control character.
    """
    value = unicodedata.normalize("NFC", path or "")
    _check_chars(value, "path")
    if value.startswith("/"):
        raise InvalidKeyError("path must be relative: it must not start with '/'")
    if "\\" in value:
        raise InvalidKeyError("path must use '/' as separator, not '\\'")
    stripped = value.rstrip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"path has an empty, '.' or '..' segment: {path!r}")
        _check_segment(segment, "path")
    return stripped + "/"


def validate_filename(name: str, *, suffix: str = ".mp4") -> str:
    """Validate a caller-chosen output file name (the seed's ``output_filename``): a plain name ending in ``suffix``.

    Raises:
        InvalidKeyError: contains ``/`` or ``\\``, is ``.``/``..``, lacks the suffix, has control characters, or
            is over MAX_SEGMENT_BYTES.
    """
    value = unicodedata.normalize("NFC", name or "")
    _check_chars(value, "output_filename")
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise InvalidKeyError(f"output_filename must be a plain file name, got {name!r}")
    if not value.lower().endswith(suffix) or len(value) <= len(suffix):
        raise InvalidKeyError(f"output_filename must end in {suffix!r}, got {name!r}")
    _check_segment(value, "output_filename")
    return value


def make_key(prefix: str, filename: str) -> str:
    """``normalize_prefix(prefix) + filename``, checked against the 1024-byte S3 limit.

    Raises:
        InvalidKeyError: any rule of :func:`normalize_prefix` / :func:`validate_filename`, or the key too long.
    """
    key = normalize_prefix(prefix) + unicodedata.normalize("NFC", filename)
    _check_chars(key, "key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key is {len(key.encode('utf-8'))} bytes in UTF-8, over S3's {MAX_KEY_BYTES}-byte limit")
    return key


def clip_filename(index: int) -> str:
    """The seed's output name for the ``index``-th image (1-based, request order): ``video_<index>.mp4``."""
    return f"video_{index}.mp4"
