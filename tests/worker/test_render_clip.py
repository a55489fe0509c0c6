"""render_clip on real photos: the properties a user checks in the delivered file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.mediatools import decode_yuv420p, ffprobe_json, luma
from tests.worker.test_imaging import png_bomb, rgba_cutout
from worker_image.contract import ClipJob, FileOutput, RenderSettings
from worker_image.engine import render_clip
from worker_image.errors import DownloadError, InputError
from worker_image.probe import is_faststart

FAST = dict(x264_preset="superfast")


def clip(src: str, out: Path, duration_s: float = 1.0, clip_id: str = "img-1") -> ClipJob:
    return ClipJob(id=clip_id, image_url=src, duration_s=duration_s, filename=out.name, output=FileOutput(path=str(out)))


def test_frames_duration_and_format_match_the_request(media_dir: Path, tmp_path: Path):
    out = tmp_path / "out" / "video_1.mp4"
    settings = RenderSettings(**FAST)
    result = render_clip(clip(str(media_dir / "photos" / "boats_2560x1600.jpg"), out, duration_s=2.3), settings,
                         allow_local_inputs=True)
    probe = ffprobe_json(out)
    video = probe["streams"][0]
    assert int(video["nb_read_frames"]) == round(2.3 * 24) == result.frames == 55
    assert abs(float(probe["format"]["duration"]) - 2.3) <= 1 / 24
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (video["width"], video["height"]) == (1920, 1080) and video.get("color_space") == "bt709"
    assert is_faststart(out) and result.size_bytes == out.stat().st_size and result.encoder == "libx264"
    assert [p.name for p in out.parent.iterdir()] == ["video_1.mp4"]  # no temporary leftovers


def test_portrait_photo_keeps_its_aspect(media_dir: Path, tmp_path: Path):
    # Paint a 220x220 white square (with a black core) into the real portrait photo, centred; render
    # the photo with and without it; the pixels that differ must form a square in the 16:9 output.
    photo = Image.open(media_dir / "photos" / "boats_portrait_900x1600.jpg").convert("RGB")
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    photo.save(plain)
    draw = ImageDraw.Draw(photo)
    draw.rectangle((340, 690, 559, 909), fill=(255, 255, 255))
    draw.rectangle((350, 700, 549, 899), fill=(0, 0, 0))
    photo.save(marked)
    settings = RenderSettings(**FAST)
    frames = {}
    for src in (plain, marked):
        out = tmp_path / f"{src.stem}.mp4"
        render_clip(clip(str(src), out), settings, allow_local_inputs=True)
        frames[src.stem] = luma(decode_yuv420p(out, 1920, 1080, frames=[0]), 1920, 1080)[0].astype(float)
    rows, cols = np.nonzero(np.abs(frames["marked"] - frames["plain"]) > 40)
    height_px, width_px = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    # the cover crop keeps the portrait's full width (900 px -> 1920 px): 220 px -> 469 px
    assert width_px == pytest.approx(220 * 1920 / 900, abs=3)
    assert width_px / height_px == pytest.approx(1.0, abs=0.02)
    assert (rows.min() + rows.max()) / 2 == pytest.approx(540, abs=2)  # centre stays put


def test_exif_rotated_photo_renders_upright(media_dir: Path, tmp_path: Path):
    rocket = Image.open(media_dir / "photos" / "rocket_640x427.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "phone.jpg"
    rocket.transpose(Image.Transpose.ROTATE_90).save(rotated, quality=95, exif=exif.tobytes())
    upright = tmp_path / "upright.png"
    rocket.save(upright)
    settings = RenderSettings(width_px=640, height_px=360, **FAST)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    render_clip(clip(str(rotated), a), settings, allow_local_inputs=True)
    render_clip(clip(str(upright), b), settings, allow_local_inputs=True)
    ya = luma(decode_yuv420p(a, 640, 360, frames=[0, 23]), 640, 360).astype(float)
    yb = luma(decode_yuv420p(b, 640, 360, frames=[0, 23]), 640, 360).astype(float)
    upside_down = np.abs(ya - yb[:, ::-1, ::-1]).mean()
    assert np.abs(ya - yb).mean() < 6.0 < upside_down  # same picture (JPEG noise aside); flipped differs by tens


def test_rgba_photo_renders_on_the_background(media_dir: Path, tmp_path: Path):
    src = tmp_path / "cutout.png"
    rgba_cutout(media_dir).save(src)
    out = tmp_path / "rgba.mp4"
    render_clip(clip(str(src), out), RenderSettings(width_px=640, height_px=360, background_color="#ffffff", **FAST),
                allow_local_inputs=True)
    y = luma(decode_yuv420p(out, 640, 360, frames=[0]), 640, 360)[0]
    # 500x500 cover-cropped to 16:9 keeps rows 109..390; its corners lie outside the r=200 circle
    assert y[:15, :15].mean() > 230  # white (Y' 235) where the image was transparent
    assert y[170:190, 310:330].mean() < 200  # picture in the middle


def test_dead_url_is_a_final_download_error_naming_the_image(origin, tmp_path: Path):
    url = origin.base_url + "/gone.jpg"
    out = tmp_path / "x.mp4"
    with pytest.raises(DownloadError) as err:
        render_clip(clip(url, out, clip_id="img-dead"), RenderSettings(**FAST))
    assert err.value.item_id == "img-dead" and err.value.field == "image_url" and not err.value.retryable
    assert "404" in str(err.value) and "img-dead" in str(err.value) and not out.exists()


def test_server_error_is_retryable(origin, tmp_path: Path):
    url = origin.add("/flaky.jpg", b"x", statuses=[503])
    with pytest.raises(DownloadError) as err:
        render_clip(clip(url, tmp_path / "x.mp4"), RenderSettings(**FAST))
    assert err.value.retryable


def test_bytes_that_are_not_an_image_are_an_input_error(origin, tmp_path: Path):
    url = origin.add("/photo.jpg", b"<html><body>Access denied</body></html>", content_type="text/html")
    out = tmp_path / "x.mp4"
    with pytest.raises(InputError) as err:
        render_clip(clip(url, out, clip_id="img-html"), RenderSettings(**FAST))
    assert err.value.item_id == "img-html" and err.value.field == "image_url" and "HTML" in str(err.value)
    assert not out.exists()


def test_image_over_the_pixel_limit_is_an_input_error(origin, tmp_path: Path):
    url = origin.add("/huge.png", png_bomb(12000, 9000), content_type="image/png")
    with pytest.raises(InputError) as err:
        render_clip(clip(url, tmp_path / "x.mp4", clip_id="img-bomb"), RenderSettings(**FAST))
    assert err.value.item_id == "img-bomb" and "108.0 MP, over the limit of 64.0 MP" in str(err.value)


def test_local_paths_need_the_local_backend(media_dir: Path, tmp_path: Path):
    with pytest.raises(InputError, match="only accepted by the local backend"):
        render_clip(clip(str(media_dir / "photos" / "rocket_640x427.jpg"), tmp_path / "x.mp4"), RenderSettings(**FAST))


def test_a_failed_render_keeps_the_previous_good_file(media_dir: Path, tmp_path: Path, origin):
    out = tmp_path / "video_1.mp4"
    render_clip(clip(str(media_dir / "photos" / "rocket_640x427.jpg"), out), RenderSettings(width_px=320, height_px=180, **FAST),
                allow_local_inputs=True)
    before = out.read_bytes()
    url = origin.add("/bad.jpg", b"not an image at all")
    with pytest.raises(InputError):
        render_clip(clip(url, out), RenderSettings(width_px=320, height_px=180, **FAST))
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["video_1.mp4"]
