"""Pure geometry and argv builders: golden values, no FFmpeg run."""

from __future__ import annotations

import numpy as np
import pytest

from worker_image import ffmpeg
from worker_image.contract import RenderSettings
from worker_image.kenburns import (
    Window,
    base_raster_size,
    chroma_matrix,
    cover_window,
    ideal_position,
    luma_matrix,
    rgb_to_ycbcr709,
    zoom_at,
    zoomed_window,
)


def test_cover_window_crops_wide_and_tall_images_to_the_output_aspect():
    wide = cover_window(2560, 1600, 1920, 1080)  # 16:10 -> crop top/bottom
    assert (wide.w, wide.h) == (2560, 1440) and (wide.x0, wide.y0) == (0, 80)
    tall = cover_window(900, 1600, 1920, 1080)  # 9:16 portrait -> a centred 16:9 band
    assert tall.w == 900 and tall.h == pytest.approx(506.25) and tall.y0 == pytest.approx((1600 - 506.25) / 2)
    assert tall.w / tall.h == pytest.approx(1920 / 1080)


def test_zoom_is_linear_exact_at_both_ends_and_strictly_monotonic():
    zooms = [zoom_at(n, 156, 1.0, 1.324) for n in range(156)]
    assert zooms[0] == 1.0 and zooms[-1] == pytest.approx(1.324)
    assert all(b > a for a, b in zip(zooms, zooms[1:]))
    assert zoom_at(0, 1, 1.2, 1.5) == 1.2  # one-frame clip shows zoom_start
    out = [zoom_at(n, 10, 1.3, 1.0) for n in range(10)]  # zoom-out is monotonic too
    assert all(b < a for a, b in zip(out, out[1:]))


def test_zoomed_window_stays_centred_and_never_rounds():
    cover = Window(0.0, 80.0, 2560.0, 1440.0)
    win = zoomed_window(cover, 1.1)
    assert win.x0 + win.w / 2 == pytest.approx(1280) and win.y0 + win.h / 2 == pytest.approx(800)
    assert win.w == pytest.approx(2560 / 1.1) and win.x0 != round(win.x0)


def test_base_raster_is_bounded_by_output_size_and_deepest_zoom():
    assert base_raster_size(Window(0, 0, 2560, 1440), 1920, 1080, 1.324) == (2542, 1430)
    assert base_raster_size(Window(0, 0, 900, 506.25), 1920, 1080, 1.324) == (1920, 1080)
    assert base_raster_size(Window(0, 0, 6000, 3375), 1920, 1080, 1.5) == (2880, 1620)


def test_luma_matrix_maps_output_pixel_centres_to_the_window():
    win = Window(10.25, 20.5, 384.0, 216.0)
    m = luma_matrix(win, 192, 108)  # sx = sy = 2
    # output pixel 0 centre (0.5) -> window x0 + 1.0 continuous -> OpenCV index 10.75
    assert m @ np.array([0, 0, 1]) == pytest.approx([10.25 + 1.0 - 0.5, 20.5 + 1.0 - 0.5])
    assert m @ np.array([191, 107, 1]) == pytest.approx([10.25 + 383.0 - 0.5, 20.5 + 215.0 - 0.5])


def test_chroma_matrix_uses_left_siting_on_half_resolution_planes():
    win = Window(0.0, 0.0, 200.0, 100.0)
    m = chroma_matrix(win, 200, 100)  # sx = sy = 1
    # chroma sample 0 sits on luma column 0 (centre 0.5) and between rows 0 and 1 (y = 1.0):
    # in half-res chroma continuous coords (0.25, 0.5) -> OpenCV index (-0.25, 0.0)
    assert m @ np.array([0, 0, 1]) == pytest.approx([-0.25, 0.0])


def test_ideal_position_keeps_the_centre_fixed_and_scales_with_zoom():
    kw = dict(image_w=2560, image_h=1600, width_px=1920, height_px=1080)
    assert ideal_position(1280, 800, zoom=1.3, **kw) == pytest.approx((960, 540))
    x1, _ = ideal_position(1280 + 100, 800, zoom=1.0, **kw)
    x2, _ = ideal_position(1280 + 100, 800, zoom=1.324, **kw)
    assert x1 - 960 == pytest.approx(75.0) and x2 - 960 == pytest.approx(75.0 * 1.324)


def test_bt709_conversion_hits_the_standard_code_values():
    rgb = np.array([[[255, 255, 255], [0, 0, 0]], [[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    y, cb, cr = rgb_to_ycbcr709(rgb)
    assert y.tolist() == [[235, 16], [235, 16]] and cb.shape == (1, 1) and int(cb[0, 0]) == 128
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    y, cb, cr = rgb_to_ycbcr709(red)
    assert (int(y[0, 0]), int(cb[0, 0]), int(cr[0, 0])) == (63, 102, 240)  # BT.709 limited-range red


def test_x264_argv_golden():
    s = RenderSettings()
    enc = ffmpeg.h264_encoder_args("libx264", crf=s.crf, x264_preset=s.x264_preset, cq=s.cq, nvenc_preset=s.nvenc_preset)
    argv = ffmpeg.rawvideo_to_mp4_argv(width_px=1920, height_px=1080, fps=24, frames=156, encoder_args=enc,
                                       output="/tmp/out.mp4")
    assert argv == [
        ffmpeg.FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "1920x1080", "-framerate", "24",
        "-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-i", "pipe:0", "-frames:v", "156",
        "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-r", "24", "-an", "-movflags", "+faststart", "-f", "mp4", "-y", "/tmp/out.mp4",
    ]


def test_nvenc_argv_uses_the_seed_settings():
    assert ffmpeg.h264_encoder_args("h264_nvenc", crf=23, x264_preset="medium", cq=23, nvenc_preset="p4") == [
        "-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr", "-cq", "23", "-b:v", "0",
        "-profile:v", "high", "-pix_fmt", "yuv420p",
    ]
    with pytest.raises(ValueError):
        ffmpeg.h264_encoder_args("libx265", crf=23, x264_preset="medium", cq=23, nvenc_preset="p4")


def test_frame_count_is_rounded_duration_times_fps():
    s = RenderSettings()
    assert s.frame_count(6.5) == 156 and s.frame_count(0.02) == 1 and s.frame_count(1.021) == 25 and s.frame_count(1.02) == 24
