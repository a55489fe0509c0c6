"""Font coverage for captions: which installed font draws each character, and which none can.

We ask fontconfig (the ``fc-match`` and ``fc-list`` tools) rather than parsing font files with
fontTools, for two reasons:

* libass, which draws our captions inside FFmpeg, finds fonts *through fontconfig*, including its
  per-glyph fallback when the chosen font lacks a character. Asking fontconfig the same question gives
  the answer libass will act on (same font directories, same configuration, same cache), whereas a
  cmap read with fontTools would need us to locate the files ourselves and could disagree with it.
* It adds no Python dependency; fontconfig is already required by FFmpeg's libass build.

fontconfig prints a font's coverage as its ``charset``: space-separated hexadecimal code points and
ranges (``"20-7e a0-17f 2010"``). One ``fc-list`` call (about 10 ms with a warm cache) gives the union
over every installed font; it is cached per process, like the NVENC probe in ``encoders.py``.

The fallback chain below lists Noto families (Debian packages ``fonts-noto-core`` and
``fonts-noto-cjk``, which the worker image installs) that cover Arabic, Hebrew, Devanagari, Thai, CJK
and symbols. A cue is split into runs, each drawn with the first font of the chain that has its
characters, so Arabic is shaped by HarfBuzz with an Arabic font and Han characters come from a CJK font
instead of whatever fontconfig would pick.
"""

from __future__ import annotations

import bisect
import functools
import logging
import subprocess
import unicodedata
from dataclasses import dataclass

from .errors import InputError, RenderError

log = logging.getLogger(__name__)

FC_MATCH = "fc-match"
FC_LIST = "fc-list"
#: fontconfig answers from its cache in milliseconds; 30 s covers a cold cache on a slow disk.
FC_TIMEOUT_S = 30.0

#: Families tried, in order, for characters the caption's own font lacks. ``{cjk}`` is replaced by
#: the CJK variant chosen for the cue (see :func:`cjk_family`).
FALLBACK_FAMILIES: tuple[str, ...] = (
    "Noto Sans",
    "Noto Sans Arabic",
    "Noto Sans Hebrew",
    "Noto Sans Devanagari",
    "Noto Sans Thai",
    "{cjk}",
    "Noto Sans Symbols",
    "Noto Sans Symbols2",
)


@dataclass(frozen=True)
class Coverage:
    """A set of Unicode code points stored as sorted, non-overlapping inclusive ranges.

    Attributes:
        starts: First code point of each range, ascending.
        ends: Last code point of each range (inclusive), same length as ``starts``.
    """

    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __contains__(self, codepoint: object) -> bool:
        if not isinstance(codepoint, int):
            return False
        i = bisect.bisect_right(self.starts, codepoint) - 1
        return i >= 0 and codepoint <= self.ends[i]

    def __len__(self) -> int:
        return sum(e - s + 1 for s, e in zip(self.starts, self.ends))


def parse_charset(text: str) -> Coverage:
    """Parse fontconfig charset text (one or more fonts' ``%{charset}``, any whitespace) into a Coverage.

    Args:
        text: Tokens like ``"20-7e"`` or ``"2010"`` (hexadecimal), separated by spaces or newlines.
            Several fonts' charsets concatenated give their union.

    Returns:
        The merged ranges.

    Raises:
        ValueError: a token is not hexadecimal.
    """
    ranges = []
    for token in text.split():
        lo, _, hi = token.partition("-")
        ranges.append((int(lo, 16), int(hi or lo, 16)))
    ranges.sort()
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in ranges:
        if ends and lo <= ends[-1] + 1:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return Coverage(tuple(starts), tuple(ends))


def _fc(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=FC_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise RenderError(f"{argv[0]} is not installed; the worker image needs the fontconfig package") from None
    except subprocess.TimeoutExpired:
        raise RenderError(f"{argv[0]} timed out after {FC_TIMEOUT_S:g} s", retryable=True) from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-300:]
        raise RenderError(f"{argv[0]} failed with exit status {done.returncode}: {tail or 'no message'}")
    return done.stdout.decode("utf-8", "replace")


@functools.cache
def family_coverage(family: str) -> Coverage | None:
    """Coverage of the regular face of an installed font family, or None when it is not installed.

    ``fc-match`` always answers with *some* font; the family counts as installed only when the answer's
    family list contains ``family`` (case-insensitive).

    Raises:
        RenderError: fontconfig tools missing or failing.
    """
    out = _fc([FC_MATCH, f"{family}:style=Regular", "--format", "%{family}\n%{charset}\n"])
    names, _, charset = out.partition("\n")
    if family.casefold() not in (n.strip().casefold() for n in names.split(",")):
        return None
    return parse_charset(charset)


@functools.cache
def installed_coverage() -> Coverage:
    """Union of the coverage of every font fontconfig knows: what libass's fallback can reach.

    Raises:
        RenderError: fontconfig tools missing or failing.
    """
    return parse_charset(_fc([FC_LIST, "--format", "%{charset}\n"]))


def is_ignorable(char: str) -> bool:
    """True for characters that draw nothing and need no glyph: controls, format characters (ZWJ,
    bidi marks, word joiner), line/paragraph separators and variation selectors."""
    if char in "\n\t ":
        return True
    cp = ord(char)
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:
        return True
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def cjk_family(text: str) -> str:
    """The Noto Sans CJK variant for a cue: JP when it has kana, KR when it has Hangul, SC otherwise.

    Han characters alone cannot tell Chinese from Japanese; Simplified Chinese is the default.
    """
    for char in text:
        cp = ord(char)
        if 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9F:
            return "Noto Sans CJK JP"
    for char in text:
        cp = ord(char)
        if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
            return "Noto Sans CJK KR"
    return "Noto Sans CJK SC"


class FontPlan:
    """Chooses a font for every character of caption text, starting from the caption's own family.

    Args:
        primary_family: The caption style's font family (e.g. ``"Noto Sans"``).

    Raises:
        InputError: (field ``style.font_family``) the family is not installed on this worker.
        RenderError: fontconfig tools missing or failing.
    """

    def __init__(self, primary_family: str) -> None:
        if family_coverage(primary_family) is None:
            raise InputError(f"font family {primary_family!r} is not installed on this worker "
                             f"(Noto families are; the default is 'Noto Sans')", field="style.font_family")
        self.primary_family = primary_family

    def _chain(self, text: str) -> list[tuple[str, Coverage]]:
        chain = []
        for name in (self.primary_family, *FALLBACK_FAMILIES):
            name = name.replace("{cjk}", cjk_family(text))
            cov = family_coverage(name)
            if cov is not None and all(name != n for n, _ in chain):
                chain.append((name, cov))
        return chain

    def runs(self, text: str) -> list[tuple[str, str]]:
        """Split text into ``(family, segment)`` runs, concatenating back to ``text``.

        A letter goes to the first family of [primary, fallback chain] that has it, so Latin stays in
        the caption's font even next to CJK (whose fonts also carry Latin). Other characters stay in
        the current run when it needs no glyph of its own (spaces, newlines, format characters), is a
        combining mark, or the run's font has it (punctuation, digits), so grapheme clusters are never
        split and HarfBuzz shapes each script run whole. A character no chain font has stays in
        the current run; libass then falls back through fontconfig (see :meth:`missing`).
        """
        chain = self._chain(text)
        coverage = dict(chain)
        runs: list[list[str]] = []  # [family, segment]
        for char in text:
            cp = ord(char)
            category = unicodedata.category(char)
            if runs and (is_ignorable(char) or category.startswith("M")
                         or (not category.startswith("L") and cp in coverage[runs[-1][0]])):
                runs[-1][1] += char
                continue
            family = next((name for name, cov in chain if cp in cov), None)
            if family is None:
                family = runs[-1][0] if runs else self.primary_family
            if runs and runs[-1][0] == family:
                runs[-1][1] += char
            else:
                runs.append([family, char])
        return [(family, segment) for family, segment in runs]



def missing_codepoints(text: str) -> list[int]:
    """Code points in ``text`` that no installed font has, sorted, without duplicates.

    These are what libass would draw as empty boxes (or not at all): neither the chosen font nor its
    fontconfig fallback has them. Ignorable characters (:func:`is_ignorable`) are not counted.

    Raises:
        RenderError: fontconfig tools missing or failing.
    """
    every = installed_coverage()
    return sorted({ord(c) for c in text if not is_ignorable(c) and ord(c) not in every})


def codepoint_label(codepoint: int) -> str:
    """``"U+E000"`` style label of a code point (at least four hex digits), as reported in results."""
    return f"U+{codepoint:04X}"
