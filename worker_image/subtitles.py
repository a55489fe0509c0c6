"""Subtitle files in, one normalised ASS script out: decoding, parsing, clipping, wrapping, writing.

Accepted inputs (the seed API's ``url_srt``):

* **SRT** and **WebVTT** are parsed into :class:`Cue` objects, then written back as an ASS script
  that *we* generate with the job's :class:`~worker_image.contract.CaptionStyle`, so the look is exact
  and the same on every worker.
* **ASS/SSA** scripts keep their own styles: their text is passed through unchanged except for the
  character encoding (always UTF-8 out) and line endings (always ``\\n``).

Real-world files are sloppy, and we accept that sloppiness: UTF-8 with or without a BOM, UTF-16 (BOM,
or BOM-less detected from NUL bytes), cp1252/latin-1 (Windows-made Portuguese subtitles), CRLF or CR
line endings, ``.`` instead of ``,`` before the milliseconds, a missing final blank line, missing or
out-of-order index numbers, extra blank lines. What we refuse, with a reason naming ``url_srt``, is a
file that is not subtitles at all: empty, binary, an HTML page (a login or error page served instead
of the file), JSON or XML (an API error, TTML).

Nothing here runs FFmpeg or touches fonts; ``caption.py`` combines this module with ``fonts.py``.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .contract import CaptionStyle
from .errors import InputError

#: The request field every parsing error names (seed API: ``POST /video/caption`` ``url_srt``).
FIELD = "url_srt"

# A timestamp: optional hours, minutes, seconds, then 1-3 fraction digits after "," (SRT), "." (VTT,
# and sloppy SRT). VTT may omit hours ("01:02.500").
_TS = r"(?:(\d{1,3}):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TS}\s*-{{1,2}}>\s*{_TS}(?:\s.*)?$")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>")  # <i>, </font>, <v Bob>, <c.yellow>, <00:01.000>
_ASS_OVERRIDE = re.compile(r"\{[^{}]*\}")  # in ASS every {...} block is an override or a comment
_SRT_OVERRIDE = re.compile(r"\{\\[^{}]*\}")  # in SRT only "{\an8}"-style tags are markup; "{text}" is text
_ASS_MARKERS = re.compile(r"\[(script info|v4\+? styles|events)\]\s*$", re.IGNORECASE)
#: The header libass needs before any other section (ASS spec, "[Script Info]"); we add it to scripts
#: that start with [V4+ Styles] or [Events] instead.
_ASS_HEADER = "[Script Info]\nScriptType: v4.00+\n\n"
_ASS_TIME = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})(?:\.(\d{1,3}))?\s*$")


@dataclass(frozen=True)
class Cue:
    """One subtitle cue.

    Attributes:
        start_s: When it appears, seconds from the start of the video.
        end_s: When it disappears, seconds; always greater than ``start_s``.
        text: Plain text (markup removed), lines separated by ``"\\n"``, never empty.
    """

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class SubtitleDoc:
    """A parsed subtitle file.

    Attributes:
        format: ``"srt"``, ``"vtt"`` or ``"ass"`` (ASS and SSA alike).
        encoding: The text encoding detected, e.g. ``"utf-8-sig"``, ``"utf-16-le"``, ``"cp1252"``.
        cues: Cues sorted by start time. For ASS, the Dialogue events with override tags removed (used
            to count cues and check glyphs; the script itself is rendered from ``ass_text``).
        ass_text: For ASS/SSA, the whole script as decoded text with ``\\n`` line endings; else None.
        warnings: Human-readable notes about what was tolerated or skipped.
    """

    format: Literal["srt", "vtt", "ass"]
    encoding: str
    cues: tuple[Cue, ...]
    ass_text: str | None = None
    warnings: tuple[str, ...] = field(default=())


# --- decoding ---------------------------------------------------------------------------------------

def _looks_utf16(data: bytes) -> str | None:
    """BOM-less UTF-16 guess: text in Latin scripts has a NUL in every other byte."""
    sample = data[:2000]
    pairs = len(sample) // 2
    if pairs < 4:
        return None
    odd = sum(1 for i in range(1, 2 * pairs, 2) if sample[i] == 0)
    even = sum(1 for i in range(0, 2 * pairs, 2) if sample[i] == 0)
    if odd > 0.4 * pairs and even < 0.05 * pairs:
        return "utf-16-le"
    if even > 0.4 * pairs and odd < 0.05 * pairs:
        return "utf-16-be"
    return None


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode subtitle bytes to text with ``\\n`` line endings and no BOM.

    Order: a BOM (UTF-32, UTF-8, UTF-16) decides; then BOM-less UTF-16 (NULs in every other byte);
    then strict UTF-8; then cp1252 (Windows Western, the usual encoding of subtitles made on Windows in
    Portuguese, Spanish, French...), and latin-1 when the bytes use one of cp1252's five undefined
    values.

    Args:
        data: The file's bytes.

    Returns:
        ``(text, encoding)``.

    Raises:
        InputError: (field ``url_srt``) binary data (NUL bytes or control characters) or invalid
            UTF-16/UTF-32.
    """
    boms = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xef\xbb\xbf", "utf-8-sig"),
            (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
    encoding = next((name for bom, name in boms if data.startswith(bom)), None)
    if encoding is not None and encoding != "utf-8-sig":
        data = data[len(next(bom for bom, name in boms if name == encoding)):]
    encoding = encoding or _looks_utf16(data)
    if encoding and encoding.startswith(("utf-16", "utf-32")):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InputError(f"subtitle file is not valid {encoding.upper()} ({exc.reason} at byte {exc.start})",
                             field=FIELD) from None
    else:
        if b"\x00" in data:
            raise InputError("subtitle file is binary data (it contains NUL bytes), not subtitles", field=FIELD)
        try:
            text = data.decode(encoding or "utf-8")
            encoding = encoding or "utf-8"
        except UnicodeDecodeError:
            try:
                text, encoding = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                text, encoding = data.decode("latin-1"), "latin-1"
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    controls = sum(1 for c in text[:8192] if unicodedata.category(c) == "Cc" and c not in "\n\t\f")
    if "\x00" in text or controls > max(2, len(text[:8192]) // 100):
        raise InputError("subtitle file is binary data (control characters), not subtitles", field=FIELD)
    return text, encoding


# --- recognising what the file is --------------------------------------------------------------------

def _excerpt(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


def _refuse_non_subtitles(text: str) -> None:
    """Raise InputError when the text is clearly another kind of document (HTML, XML, JSON)."""
    head = text.lstrip()[:2048]
    lower = head.lower()
    if lower.startswith("<") and re.search(r"<(!doctype\s+html|html|head|body)\b", lower):
        raise InputError(f"subtitle URL returned an HTML page, not subtitles (an error or login page?): "
                         f"starts with {_excerpt(head)}", field=FIELD)
    if lower.startswith("<"):
        raise InputError(f"subtitle file is XML (TTML/DFXP?), which is not supported; use SRT, WebVTT or "
                         f"ASS/SSA: starts with {_excerpt(head)}", field=FIELD)
    if head[:1] in "{[":
        try:
            json.loads(text)
        except ValueError:
            return
        raise InputError(f"subtitle URL returned JSON, not subtitles (an API error?): starts with {_excerpt(head)}",
                         field=FIELD)


def _seconds(h: str | None, m: str, s: str, frac: str | None) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + (float("0." + frac) if frac else 0.0)


def _clean_line(line: str, *, vtt: bool) -> str:
    line = _TAG.sub("", line)
    line = _SRT_OVERRIDE.sub("", line)  # "{\an8}" and similar, which some tools put in SRT
    if vtt:
        line = html.unescape(line)
    return line.strip()


def _parse_timed(text: str, *, vtt: bool) -> tuple[list[Cue], list[str]]:
    """Cues of an SRT or WebVTT text: every timing line starts a cue; its text runs to the next."""
    lines = text.split("\n")
    timing = [(i, m) for i, line in enumerate(lines) if (m := _TIMING.match(line))]
    cues: list[Cue] = []
    warnings: list[str] = []
    for k, (i, match) in enumerate(timing):
        body = lines[i + 1: timing[k + 1][0] if k + 1 < len(timing) else len(lines)]
        if vtt:  # WebVTT: the cue text ends at the first blank line (then NOTE blocks or an identifier)
            end = next((n for n, line in enumerate(body) if not line.strip()), len(body))
            body = body[:end]
        else:  # SRT: tolerate blank lines inside; the next cue's index number is not text
            body = [line for line in body if line.strip()]
            if k + 1 < len(timing) and body and body[-1].strip().isdigit():
                body = body[:-1]
        cleaned = [c for c in (_clean_line(line, vtt=vtt) for line in body) if c]
        g = match.groups()
        start_s, end_s = _seconds(*g[0:4]), _seconds(*g[4:8])
        where = f"cue at line {i + 1} ({lines[i].strip()})"
        if not cleaned:
            warnings.append(f"{where} has no text; skipped")
        elif end_s <= start_s:
            warnings.append(f"{where} ends before it starts; skipped")
        else:
            cues.append(Cue(start_s, end_s, "\n".join(cleaned)))
    if any(b.start_s < a.start_s for a, b in zip(cues, cues[1:])):
        warnings.append("cues were not in time order; sorted by start time")
    cues.sort(key=lambda c: (c.start_s, c.end_s))
    return cues, warnings


def _parse_ass_events(text: str) -> list[Cue]:
    """Dialogue events of an ASS/SSA script as cues (override tags removed), for counting and glyph
    checks. Field positions come from the ``[Events]`` section's ``Format:`` line."""
    fields = ["layer", "start", "end", "style", "name", "marginl", "marginr", "marginv", "effect", "text"]
    in_events = False
    cues = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("["):
            in_events = stripped.lower() == "[events]"
            continue
        if not in_events:
            continue
        key, _, value = stripped.partition(":")
        if key.lower() == "format":
            fields = [f.strip().lower() for f in value.split(",")]
        elif key.lower() == "dialogue" and "start" in fields and "end" in fields and fields[-1] == "text":
            parts = value.split(",", len(fields) - 1)
            if len(parts) != len(fields):
                continue
            start, end = (_ASS_TIME.match(parts[fields.index(k)]) for k in ("start", "end"))
            if not start or not end:
                continue
            body = _ASS_OVERRIDE.sub("", parts[-1]).replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
            start_s, end_s = _seconds(*start.groups()), _seconds(*end.groups())
            if end_s > start_s and body.strip():
                cues.append(Cue(start_s, end_s, body.strip()))
    cues.sort(key=lambda c: (c.start_s, c.end_s))
    return cues


def parse_subtitles(data: bytes) -> SubtitleDoc:
    """Decode and parse a subtitle file of any accepted format.

    Args:
        data: The file's bytes as downloaded.

    Returns:
        The parsed document; ``cues`` is never empty.

    Raises:
        InputError: (field ``url_srt``) empty, binary, HTML/XML/JSON, no cues found, or no cue with
            text and a positive duration.
    """
    if not data.strip():
        raise InputError("subtitle file is empty", field=FIELD)
    text, encoding = decode_text(data)
    if not text.strip():
        raise InputError("subtitle file is empty", field=FIELD)
    if text.lstrip().startswith("WEBVTT"):
        cues, warnings = _parse_timed(text, vtt=True)
        fmt: Literal["srt", "vtt", "ass"] = "vtt"
    elif _ASS_MARKERS.match(first_line := text.lstrip().split("\n", 1)[0].strip()):
        # Only a section header on the first line makes a file ASS: an SRT with a stray "[Events]"
        # line further down stays SRT (it would make libass fail).
        cues = _parse_ass_events(text)
        if not cues:
            raise InputError("ASS/SSA script has no Dialogue events with text", field=FIELD)
        if first_line.lower() != "[script info]":
            text = _ASS_HEADER + text.lstrip()
        return SubtitleDoc(format="ass", encoding=encoding, cues=tuple(cues), ass_text=text)
    else:
        _refuse_non_subtitles(text)
        if not any(_TIMING.match(line) for line in text.split("\n")):
            raise InputError(f"no subtitle cues found: expected SRT ('00:00:01,000 --> 00:00:02,500'), WebVTT "
                             f"or ASS/SSA; file starts with {_excerpt(text)}", field=FIELD)
        cues, warnings = _parse_timed(text, vtt=False)
        fmt = "srt"
    if not cues:
        raise InputError(f"no usable cue in the {fmt.upper()} file ({'; '.join(warnings)})", field=FIELD)
    return SubtitleDoc(format=fmt, encoding=encoding, cues=tuple(cues), warnings=tuple(warnings))


# --- fitting cues to the video -----------------------------------------------------------------------

def clip_to_duration(cues: Sequence[Cue], duration_s: float) -> tuple[list[Cue], int, int]:
    """Fit cues into a video of ``duration_s`` seconds.

    A cue that starts at or after the end is dropped; one that runs past it is cut at ``duration_s``.

    Returns:
        ``(cues, clipped, dropped)``: the kept cues and how many were cut short or dropped.
    """
    kept, clipped, dropped = [], 0, 0
    for cue in cues:
        if cue.start_s >= duration_s:
            dropped += 1
        elif cue.end_s > duration_s:
            kept.append(Cue(cue.start_s, duration_s, cue.text))
            clipped += 1
        else:
            kept.append(cue)
    return kept, clipped, dropped


# --- wrapping ---------------------------------------------------------------------------------------

def display_width(text: str) -> int:
    """Width of text in character cells: East Asian wide and fullwidth characters count 2, combining
    marks and format characters 0, everything else 1 (the convention of subtitle line-length rules)."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) == "Cf":
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _greedy(words: list[str], limit: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if display_width(candidate) <= limit:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = ""
        for char in word:  # a word wider than the line (or CJK text without spaces) breaks anywhere
            if current and display_width(current + char) > limit:
                lines.append(current)
                current = ""
            current += char
    if current:
        lines.append(current)
    return lines


def wrap_line(line: str, max_chars: int) -> list[str]:
    """Wrap one line at spaces so no line is wider than ``max_chars`` cells (:func:`display_width`).

    Lines are balanced: with the fewest lines greedy wrapping needs, the narrowest width that still
    fits in that many lines is used, so two lines come out of similar length instead of a long line
    and a stub. Punctuation standing alone between spaces stays with the word before it. Words wider than the limit (and text without spaces, such as Chinese or Japanese) are
    broken between characters.

    Returns:
        The wrapped lines (one line when it already fits; empty list for blank input).
    """
    words: list[str] = []
    for word in line.split():
        if words and not any(c.isalnum() for c in word):
            words[-1] += " " + word  # a lone dash or "?" (French spacing) never starts a line
        else:
            words.append(word)
    if not words:
        return []
    lines = _greedy(words, max_chars)
    if len(lines) < 2:
        return lines
    for width in range(max(1, -(-display_width(" ".join(words)) // len(lines))), max_chars):
        balanced = _greedy(words, width)
        if len(balanced) <= len(lines) and all(display_width(w) <= width for w in words):
            return balanced
    return lines


def wrap_text(text: str, max_chars: int) -> str:
    """Wrap every line of a cue's text with :func:`wrap_line`; the author's line breaks are kept."""
    return "\n".join(out for line in text.split("\n") for out in wrap_line(line, max_chars))


# --- writing ASS -------------------------------------------------------------------------------------

def ass_color(hex_rgb: str, *, opacity: float = 1.0) -> str:
    """``"#RRGGBB"`` and an opacity in [0, 1] to ASS ``&HAABBGGRR`` (alpha 00 is opaque, FF clear)."""
    rgb = hex_rgb.lstrip("#")
    alpha = round((1.0 - opacity) * 255)
    return f"&H{alpha:02X}{rgb[4:6]}{rgb[2:4]}{rgb[0:2]}".upper()


def ass_time(seconds: float) -> str:
    """Seconds to ASS ``H:MM:SS.cc`` (centiseconds, the format's resolution), rounded to nearest."""
    cs = max(0, round(seconds * 100))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def escape_ass_text(text: str) -> str:
    """Make plain text safe as ASS event text: it must draw exactly these characters.

    ``{`` and ``}`` would open and close an override block; libass reads ``\\{`` and ``\\}`` as the
    literal braces. A backslash followed by ``N``, ``n`` or ``h`` would be a line break or hard space,
    and ASS has no escape for the backslash itself, so a WORD JOINER (U+2060, zero width, default
    ignorable) is put after every backslash. Newlines become ``\\N``.
    """
    return (text.replace("\\", "\\\u2060").replace("{", "\\{").replace("}", "\\}").replace("\n", "\\N"))


_ALIGNMENT = {"bottom": 2, "middle": 5, "top": 8}  # ASS numpad alignment, centred horizontally


def build_ass(
    cues: Sequence[Cue],
    style: CaptionStyle,
    *,
    width_px: int,
    height_px: int,
    runs: Callable[[str], list[tuple[str, str]]] | None = None,
) -> str:
    """Write an ASS script showing ``cues`` in ``style`` on a ``width_px`` x ``height_px`` picture.

    ``PlayResX/PlayResY`` equal the picture size, so every size below is in output pixels: font size
    ``font_size_pct`` % of the height, outline (or box padding) ``outline_width_pct`` % of the height,
    vertical margin ``margin_v_pct`` % of the height, side margins ``margin_h_pct`` % of the width.
    Text is wrapped to ``max_chars_per_line`` by :func:`wrap_text`; ``WrapStyle: 0`` lets libass wrap
    further only a line still wider than the picture. ``Encoding: -1`` is libass's "detect the base
    direction" value (``resolve_base_direction`` in libass's ``ass_shaper.c``), so an Arabic or Hebrew
    line is laid out right-to-left, with its punctuation on the correct side.

    Args:
        cues: The cues, already clipped to the video.
        style: The caption style from the job.
        width_px: Upright output width in pixels.
        height_px: Upright output height in pixels.
        runs: Optional ``text -> [(font_family, segment), ...]`` (``fonts.FontPlan.runs``); each
            segment is drawn in its family with a ``\\fn`` override. None draws everything in
            ``style.font_family``.

    Returns:
        The script text (write it as UTF-8).
    """
    font_size = round(style.font_size_pct / 100.0 * height_px, 1)
    outline = round(style.outline_width_pct / 100.0 * height_px, 2)
    if style.box:
        border_style, outline_colour = 3, ass_color(style.box_color, opacity=style.box_opacity)
    else:
        border_style, outline_colour = 1, ass_color(style.outline_color)
    primary = ass_color(style.primary_color)
    margin_h = round(style.margin_h_pct / 100.0 * width_px)
    margin_v = round(style.margin_v_pct / 100.0 * height_px)
    header = [
        "[Script Info]",
        "; Written by api-gpu worker_image.subtitles",
        "ScriptType: v4.00+",
        f"PlayResX: {width_px}",
        f"PlayResY: {height_px}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
        "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
        "MarginL, MarginR, MarginV, Encoding",
        f"Style: Default,{style.font_family},{font_size:g},{primary},{primary},{outline_colour},&H00000000,"
        f"0,0,0,0,100,100,0,0,{border_style},{outline:g},0,{_ALIGNMENT[style.position]},"
        f"{margin_h},{margin_h},{margin_v},-1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = []
    for cue in cues:
        text = wrap_text(cue.text, style.max_chars_per_line)
        pieces, active = [], style.font_family
        for family, segment in (runs(text) if runs else [(style.font_family, text)]):
            if family != active:
                pieces.append("{\\fn" + family + "}")
                active = family
            pieces.append(escape_ass_text(segment))
        start, end = ass_time(cue.start_s), ass_time(cue.end_s)
        if end == start:  # a cue shorter than the format's 10 ms resolution still shows once
            end = ass_time(cue.start_s + 0.01)
        events.append(f"Dialogue: 0,{start},{end},Default,,0,0,0,,{''.join(pieces)}")
    return "\n".join(header + events) + "\n"
