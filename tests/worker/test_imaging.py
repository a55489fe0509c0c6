"""Pillow decoding on real photos and awkward variants built from them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker_image.errors import InputError
from worker_image.imaging import load_image

LIMIT = 64_000_000


def _mae(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


@pytest.fixture()
def rocket(media_dir: Path) -> Image.Image:
    return Image.open(media_dir / "photos" / "rocket_640x427.jpg").convert("RGB")


def test_exif_orientation_is_applied(rocket: Image.Image, tmp_path: Path):
    # Store the pixels rotated 90 degrees counter-clockwise and tag Orientation=6 ("rotate 90 CW to
    # display"), as a phone does for a portrait shot: the decoded image must be upright again.
    stored = rocket.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    out = load_image(path, max_pixels=LIMIT)
    assert out.size == rocket.size == (640, 427)
    assert _mae(out, rocket) < 3.0


def rgba_cutout(media_dir: Path) -> Image.Image:
    """The shared RGBA logo (whose alpha is fully opaque) with a real hole: alpha 0 outside a centred
    circle of radius 200 px and a soft 50 % ring between radius 180 and 200."""
    logo = Image.open(media_dir / "photos" / "logo_rgba_500x500.png").convert("RGBA")
    yy, xx = np.mgrid[0:500, 0:500]
    r = np.hypot(xx - 249.5, yy - 249.5)
    alpha = np.where(r < 180, 255, np.where(r < 200, 128, 0)).astype(np.uint8)
    logo.putalpha(Image.fromarray(alpha))
    return logo


def test_rgba_is_flattened_onto_the_background(media_dir: Path, tmp_path: Path):
    logo = rgba_cutout(media_dir)
    path = tmp_path / "cutout.png"
    logo.save(path)
    out = load_image(path, max_pixels=LIMIT, background_color="#ff8000")
    assert out.mode == "RGB" and out.getpixel((2, 2)) == (255, 128, 0)  # fully transparent corner
    assert out.getpixel((250, 250)) == logo.getpixel((250, 250))[:3]  # opaque centre unchanged
    ring = logo.getpixel((250, 60))  # r = 190: half transparent, blended halfway to the background
    got = out.getpixel((250, 60))
    for channel, bg in zip(range(3), (255, 128, 0)):
        assert abs(got[channel] - (ring[channel] + bg) / 2) <= 2


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "LA", "I;16"])
def test_other_modes_become_8bit_rgb(rocket: Image.Image, tmp_path: Path, mode: str):
    if mode == "CMYK":
        img, path = rocket.convert("CMYK"), tmp_path / "cmyk.jpg"
    elif mode == "I;16":
        gray16 = (np.asarray(rocket.convert("L"), np.uint16) * 257).astype(np.uint16)
        img, path = Image.fromarray(gray16), tmp_path / "gray16.png"
    elif mode == "P":
        img, path = rocket.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), tmp_path / "pal.png"
    else:
        img, path = rocket.convert(mode), tmp_path / f"{mode}.png"
    img.save(path)
    out = load_image(path, max_pixels=LIMIT)
    assert out.mode == "RGB" and out.size == rocket.size
    reference = rocket.convert("L").convert("RGB") if mode in ("L", "LA", "I;16") else rocket
    assert _mae(out, reference) < 12.0  # palette quantisation and CMYK round trip cost a little


def test_format_is_sniffed_from_bytes_not_the_name(rocket: Image.Image, tmp_path: Path):
    path = tmp_path / "actually_png.jpg"
    rocket.save(path, format="PNG")
    assert load_image(path, max_pixels=LIMIT).size == (640, 427)


def test_html_error_page_is_refused_with_a_clear_reason(tmp_path: Path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    with pytest.raises(InputError) as err:
        load_image(path, max_pixels=LIMIT)
    assert err.value.field == "image_url" and "HTML page" in str(err.value) and not err.value.retryable


def test_image_over_the_pixel_limit_is_refused_before_decoding(rocket: Image.Image, tmp_path: Path):
    path = tmp_path / "rocket.jpg"
    rocket.save(path)
    with pytest.raises(InputError, match=r"640x427 = 0.3 MP, over the limit of 0.1 MP"):
        load_image(path, max_pixels=100_000)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` 8-bit gray pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(9000, 8000), (60000, 60000)])
def test_decompression_bombs_are_refused(tmp_path: Path, size: tuple[int, int]):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(*size))
    with pytest.raises(InputError) as err:
        load_image(path, max_pixels=LIMIT)
    assert err.value.field == "image_url" and ("over the limit" in str(err.value) or "bomb" in str(err.value))


def test_truncated_jpeg_is_an_input_error(media_dir: Path, tmp_path: Path):
    data = (media_dir / "photos" / "rocket_640x427.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(path, max_pixels=LIMIT)
