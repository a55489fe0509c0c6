"""Subtitle parsing, normalisation and ASS writing (no FFmpeg run); font coverage through fontconfig."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from worker_image import fonts
from worker_image.contract import CaptionStyle
from worker_image.errors import InputError
from worker_image.subtitles import (
    Cue,
    ass_color,
    ass_time,
    build_ass,
    clip_to_duration,
    decode_text,
    display_width,
    escape_ass_text,
    parse_subtitles,
    wrap_line,
    wrap_text,
)

# The three cues of ../shared/media/subtitles/legendas_ptbr.srt, as parsed.
EXPECTED = [
    Cue(0.3, 1.9, "Olá! Este é um pequeno teste."),
    Cue(2.0, 3.6, "Ação, emoção e coração — tudo em português."),
    Cue(3.7, 5.1, "Até a próxima, pessoal!"),
]

needs_fontconfig = pytest.mark.skipif(shutil.which("fc-match") is None or shutil.which("fc-list") is None,
                                      reason="fontconfig tools (fc-match, fc-list) are not installed")


@pytest.fixture(scope="module")
def srt_text(media_dir: Path) -> str:
    """The shared Portuguese SRT as text (UTF-8, LF, blank line between cues)."""
    return (media_dir / "subtitles" / "legendas_ptbr.srt").read_text(encoding="utf-8")


def _blocks(text: str) -> list[list[str]]:
    return [block.split("\n") for block in text.strip().split("\n\n")]


# Awkward variants of the shared SRT, each built in the test from its text.
VARIANTS = {
    "utf8_bom": lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),
    "utf16le_bom": lambda t: b"\xff\xfe" + t.encode("utf-16-le"),
    "utf16be_bom": lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
    "utf16le_no_bom": lambda t: t.encode("utf-16-le"),
    "cp1252": lambda t: t.encode("cp1252"),
    "crlf": lambda t: t.replace("\n", "\r\n").encode("utf-8"),
    "cr_only": lambda t: t.replace("\n", "\r").encode("utf-8"),
    "dot_millis": lambda t: t.replace(",", ".", 1).replace("00,", "00.").encode("utf-8"),
    "no_final_blank_line": lambda t: t.rstrip("\n").encode("utf-8"),
    "no_blank_lines_at_all": lambda t: "\n".join(line for line in t.split("\n") if line.strip()).encode("utf-8"),
    "extra_blank_lines": lambda t: ("\n\n\n" + t.replace("\n\n", "\n\n\n\n") + "\n\n\n").encode("utf-8"),
    "no_index_numbers": lambda t: "\n\n".join("\n".join(b[1:]) for b in _blocks(t)).encode("utf-8"),
    "indices_out_of_order": lambda t: "\n\n".join(
        "\n".join(b) for b in (_blocks(t)[2], _blocks(t)[0], _blocks(t)[1])).encode("utf-8"),
    "markup_and_position_tags": lambda t: t.replace("Olá!", "{\\an8}<i>Olá!</i>").replace(
        "pessoal", '<font color="#ff0000">pessoal</font>').encode("utf-8"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_awkward_srt_variants_parse_to_the_same_cues(srt_text, variant):
    doc = parse_subtitles(VARIANTS[variant](srt_text))
    assert doc.format == "srt"
    assert [(c.start_s, c.end_s, c.text) for c in doc.cues] == [(c.start_s, c.end_s, c.text) for c in EXPECTED]


def test_detected_encodings_are_reported(srt_text):
    assert parse_subtitles(srt_text.encode()).encoding == "utf-8"
    assert parse_subtitles(VARIANTS["utf8_bom"](srt_text)).encoding == "utf-8-sig"
    assert parse_subtitles(VARIANTS["utf16le_no_bom"](srt_text)).encoding == "utf-16-le"
    assert parse_subtitles(VARIANTS["cp1252"](srt_text)).encoding == "cp1252"


def test_out_of_order_cues_are_sorted_with_a_warning(srt_text):
    doc = parse_subtitles(VARIANTS["indices_out_of_order"](srt_text))
    assert any("sorted" in w for w in doc.warnings)


def test_latin1_bytes_undefined_in_cp1252_still_decode():
    text, encoding = decode_text("1\n00:00:01,000 --> 00:00:02,000\nçã\x81\n".encode("latin-1"))
    assert encoding == "latin-1" and "çã" in text


def test_sloppy_timestamps_are_tolerated():
    doc = parse_subtitles(b"00:00:01.5-->00:00:02,25\nshort fractions, no spaces\n\n"
                          b"1:02:03,004 --> 1:02:04,000 X1:10 X2:20\nhours without padding, coordinates\n")
    assert [(c.start_s, c.end_s) for c in doc.cues] == [(1.5, 2.25), (3723.004, 3724.0)]


def test_cues_without_text_or_with_negative_duration_are_skipped_with_warnings():
    doc = parse_subtitles(b"1\n00:00:01,000 --> 00:00:02,000\n<i></i>\n\n2\n00:00:05,000 --> 00:00:04,000\nbackwards\n\n"
                          b"3\n00:00:06,000 --> 00:00:07,000\nkept\n")
    assert [c.text for c in doc.cues] == ["kept"]
    assert len(doc.warnings) == 2 and "no text" in doc.warnings[0] and "ends before" in doc.warnings[1]


def test_webvtt_header_notes_identifiers_settings_tags_and_entities():
    vtt = ("WEBVTT - Legendas\nKind: captions\n\nNOTE written by hand\nover two lines\n\n"
           "intro\n00:01.000 --> 00:02.500 align:start position:10%\n<v Ana>Olá &amp; bem-vindos</v>\n"
           "<c.yellow>segunda</c> linha\n\nSTYLE\n::cue { color: red }\n\n"
           "00:00:03.000 --> 00:00:04.000\nTudo <00:00:03.500>bem&nbsp;?\n")
    doc = parse_subtitles(vtt.encode("utf-8"))
    assert doc.format == "vtt"
    assert [(c.start_s, c.end_s, c.text) for c in doc.cues] == [
        (1.0, 2.5, "Olá & bem-vindos\nsegunda linha"),
        (3.0, 4.0, "Tudo bem\xa0?"),
    ]


ASS_SCRIPT = """[Script Info]
ScriptType: v4.00+
PlayResX: 640
PlayResY: 360

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Top,Noto Sans,40,&H000000FF,&H000000FF,&H00000000,&H00000000,1,0,0,0,100,100,0,0,1,2,0,8,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.20,0:00:00.90,Top,,0,0,0,,{\\b1}Olá,{\\i1} mundo\\Nsegunda
Comment: 0,0:00:00.00,0:00:09.00,Top,,0,0,0,,not shown
Dialogue: 0,0:00:09.00,0:00:10.00,Top,,0,0,0,,depois do fim
"""


def test_ass_passes_through_with_its_own_styles_and_any_encoding():
    doc = parse_subtitles(b"\xff\xfe" + ASS_SCRIPT.replace("\n", "\r\n").encode("utf-16-le"))
    assert doc.format == "ass" and doc.encoding == "utf-16-le"
    assert doc.ass_text == ASS_SCRIPT  # same script: only the encoding and line endings were normalised
    assert [(c.start_s, c.end_s, c.text) for c in doc.cues] == [(0.2, 0.9, "Olá, mundo\nsegunda"),
                                                                (9.0, 10.0, "depois do fim")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"  \n\r\n\t ", "empty"),
        (b"\xef\xbb\xbf\r\n", "empty"),
        (b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body>Access denied</body></html>",
         "HTML page"),
        (b"\n  <html>\n<body>Sign in to continue</body></html>", "HTML page"),
        (json.dumps({"error": "NoSuchKey", "message": "The specified key does not exist."}).encode(), "JSON"),
        (b'<?xml version="1.0"?><tt xmlns="http://www.w3.org/ns/ttml"></tt>', "XML"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01", "binary"),
        (bytes(range(1, 32)) * 20, "binary"),
        (b"Just a text file.\nNo timings here.\n", "no subtitle cues found"),
        (b"1\n00:00:02,000 --> 00:00:01,000\nbackwards only\n", "no usable cue"),
        (b"[Script Info]\nTitle: nothing\n\n[Events]\nFormat: Layer, Start, End, Style, Text\n", "no Dialogue"),
    ],
    ids=["empty", "whitespace", "bom-only", "html-403", "html-login", "json", "ttml-xml", "png", "controls",
         "plain-text", "only-backwards", "ass-no-events"],
)
def test_files_that_are_not_subtitles_are_refused_with_a_reason(data, reason):
    with pytest.raises(InputError) as info:
        parse_subtitles(data)
    assert info.value.field == "url_srt"
    assert reason in info.value.message


def test_cues_past_the_end_are_clipped_or_dropped():
    cues = [Cue(0.0, 1.0, "a"), Cue(4.0, 6.0, "b"), Cue(5.28, 6.0, "c"), Cue(7.0, 8.0, "d")]
    kept, clipped, dropped = clip_to_duration(cues, 5.28)
    assert kept == [Cue(0.0, 1.0, "a"), Cue(4.0, 5.28, "b")]
    assert (clipped, dropped) == (1, 2)


def test_wrapping_balances_lines_and_respects_the_limit():
    text = "Ação, emoção e coração — tudo em português."
    assert wrap_line(text, 42) == ["Ação, emoção e coração —", "tudo em português."]
    for limit in (10, 16, 25):
        assert all(display_width(line) <= limit for line in wrap_line(text, limit))
        assert " ".join(wrap_line(text, limit)) == text
    assert wrap_line("short", 42) == ["short"]
    assert wrap_line("Supercalifragilistic", 8) == ["Supercal", "ifragili", "stic"]
    assert wrap_text("first line\nsecond", 42) == "first line\nsecond"  # the author's breaks are kept


def test_cjk_characters_count_double_width():
    assert display_width("日本語") == 6 and display_width("abc") == 3 and display_width("é") == 1
    lines = wrap_line("日本語のテストです", 8)
    assert lines == ["日本語の", "テストで", "す"] and all(display_width(line) <= 8 for line in lines)


def test_ass_escaping_keeps_user_text_literal():
    assert escape_ass_text("{\\an8} C:\\new\nx}") == "\\{\\\u2060an8\\} C:\\\u2060new\\Nx\\}"


def test_ass_colors_and_times():
    assert ass_color("#ff8000") == "&H000080FF"
    assert ass_color("#000000", opacity=0.6) == "&H66000000"
    assert ass_time(0.3) == "0:00:00.30" and ass_time(3723.456) == "1:02:03.46" and ass_time(-1) == "0:00:00.00"


def test_build_ass_default_style_golden():
    script = build_ass([Cue(0.3, 1.9, "Olá {x}!")], CaptionStyle(), width_px=1280, height_px=720)
    assert script.splitlines()[2:7] == ["ScriptType: v4.00+", "PlayResX: 1280", "PlayResY: 720", "WrapStyle: 0",
                                        "ScaledBorderAndShadow: yes"]
    assert ("Style: Default,Noto Sans,36,&H00FFFFFF,&H00FFFFFF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1.8,0,2,"
            "64,64,36,-1") in script
    assert script.endswith("Dialogue: 0,0:00:00.30,0:00:01.90,Default,,0,0,0,,Olá \\{x\\}!\n")


def test_build_ass_box_top_and_font_runs():
    style = CaptionStyle(box=True, box_color="#102030", box_opacity=1.0, position="top", font_size_pct=10,
                         max_chars_per_line=20)

    def runs(text):
        return [("Noto Sans", text[:4]), ("Noto Sans Arabic", text[4:])]

    script = build_ass([Cue(1.0, 2.0, "abc مرحبا بالعالم")], style, width_px=640, height_px=360, runs=runs)
    assert ",Noto Sans,36,&H00FFFFFF,&H00FFFFFF,&H00302010,&H00000000,0,0,0,0,100,100,0,0,3,0.9,0,8," in script
    assert script.rstrip().endswith(",,abc {\\fnNoto Sans Arabic}مرحبا بالعالم")


@needs_fontconfig
def test_charset_parsing_merges_ranges():
    cov = fonts.parse_charset("20-7e a0-ff\n61-62 100 101-17f 3000")
    assert (cov.starts, cov.ends) == ((0x20, 0xA0, 0x3000), (0x7E, 0x17F, 0x3000))
    assert 0x41 in cov and 0x9F not in cov and 0x17F in cov and 0x3000 in cov and len(cov) == 95 + 224 + 1


@needs_fontconfig
def test_font_plan_puts_each_script_in_a_font_that_has_it():
    plan = fonts.FontPlan("Noto Sans")
    assert plan.runs("Olá مرحبا بالعالم! 你好 ok") == [
        ("Noto Sans", "Olá "), ("Noto Sans Arabic", "مرحبا بالعالم! "), ("Noto Sans CJK SC", "你好 "),
        ("Noto Sans", "ok")]
    assert plan.runs("日本語のテスト")[0][0] == "Noto Sans CJK JP"
    assert plan.runs("한국어")[0][0] == "Noto Sans CJK KR"
    assert fonts.missing_codepoints("a\u200d \ue000 é \U0001f9ff\ue000") == [0xE000, 0x1F9FF]
    assert fonts.codepoint_label(0xE000) == "U+E000"


@needs_fontconfig
def test_a_font_that_is_not_installed_is_refused():
    with pytest.raises(InputError) as info:
        fonts.FontPlan("No Such Font Family")
    assert info.value.field == "style.font_family"
