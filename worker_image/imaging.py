"""Still-image decoding with Pillow into 8-bit sRGB, ready for the Ken Burns renderer.

What :func:`load_image` guarantees about its result:

* the format is sniffed from the bytes (Pillow's decoders), never from the file name;
* the pixel count is checked against a limit *before* decoding (decompression bombs);
* EXIF orientation is applied (phones store portrait photos as rotated landscape + a tag);
* embedded ICC profiles are converted to sRGB; CMYK, 16-bit, grayscale and palette images become
  8-bit RGB;
* transparency is flattened onto a documented background colour (RenderSettings.background_color).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .errors import InputError

log = logging.getLogger(__name__)

#: Raster formats accepted as stills. Pillow sniffs these from the first bytes of the file.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: EXIF tag 0x0112 (Orientation) values whose transform swaps width and height (TIFF/EP, EXIF 2.3).
_SWAPS_AXES = {5, 6, 7, 8}

_SRGB = None


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    global _SRGB
    if _SRGB is None:
        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return _SRGB


def _describe_bytes(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "the file is empty"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "the bytes are an HTML page, not an image (a login or error page?)"
    if text.startswith((b"{", b"[")):
        return "the bytes are JSON, not an image"
    return f"the bytes are not a supported image format ({', '.join(ALLOWED_FORMATS)}); they start with {head[:12]!r}"


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF is not fatal: treat as upright
        orientation = 1
    w, h = img.size
    return (h, w) if orientation in _SWAPS_AXES else (w, h)


def _to_8bit_rgb_or_rgba(img: Image.Image) -> Image.Image:
    """Normalise any Pillow mode to RGB or RGBA (8 bits per channel)."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples (PNG/TIFF gray-16 loads as I;16 or I): 0..65535 -> 0..255, rounded (x 255/65535).
        # Integer arithmetic: a float64 copy of a 64 MP image would take 512 MB.
        arr = np.clip(np.asarray(img), 0, 65535).astype(np.uint32)
        return Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if arr.size and float(np.nanmax(arr)) <= 1.0:  # float TIFFs are usually 0..1
            arr = arr * 255.0
        return Image.fromarray(np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "RGB"):
        return img
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode in ("LA", "La", "PA", "RGBa", "RGBX"):
        return img.convert("RGBA" if mode != "RGBX" else "RGB")
    if mode == "L" and "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGB")  # 1, L, CMYK (naive, no profile), YCbCr, ...


def _apply_icc(img: Image.Image) -> Image.Image:
    """Convert pixels with an embedded ICC profile to sRGB (alpha preserved)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        base = img.convert("RGB") if img.mode == "RGBA" else img
        out = ImageCms.profileToProfile(base, src, _srgb_profile(), outputMode="RGB")
        if alpha is not None:
            out.putalpha(alpha)
        return out
    except Exception as exc:  # a broken profile must not sink the render: fall back to the raw values
        log.warning("ignoring unusable ICC profile: %s", exc)
        return img


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int,
    background_color: str = "#000000",
    needed_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image file into an upright 8-bit sRGB ``RGB`` Pillow image.

    Args:
        path: Local file (already downloaded; its name is ours, its bytes are the caller's).
        max_pixels: Refuse images with more than this many pixels (width x height), before decoding.
        background_color: ``#RRGGBB`` that transparent pixels are composited onto.
        needed_size: Optional (width, height) in upright pixels below which the decoded image need not
            go. JPEGs much larger than this are decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling),
            which saves most of the decode time of a 50 MP photo without losing needed detail.

    Returns:
        An ``RGB`` image, EXIF orientation applied.

    Raises:
        InputError: (field ``image_url``) not an image, an unsupported format, over ``max_pixels``, or
            truncated/corrupt data.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InputError(_describe_bytes(path), field="image_url") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard (over 2x its default) fired first
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.1f} MP" if pixels else "too many pixels"
        raise InputError(f"image is {size}, over the limit of {max_pixels / 1e6:.1f} MP (max_image_pixels); "
                         "refused as a decompression bomb", field="image_url") from None
    except OSError as exc:
        raise InputError(f"image could not be read: {exc}", field="image_url") from None

    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise InputError(
                f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of "
                f"{max_pixels / 1e6:.1f} MP (max_image_pixels)",
                field="image_url",
            )
        if needed_size and img.format in ("JPEG", "MPO"):
            up_w, up_h = _oriented_size(img)
            scale = max(needed_size[0] / up_w, needed_size[1] / up_h)
            if scale < 0.5:
                stored = (math.ceil(width * scale), math.ceil(height * scale))
                img.draft("RGB", stored)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
                upright = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"image data is corrupt or truncated: {exc}", field="image_url") from None
        normalised = _to_8bit_rgb_or_rgba(_apply_icc(upright))
        if normalised.mode == "RGBA":
            canvas = Image.new("RGB", normalised.size, background_color)
            canvas.paste(normalised, mask=normalised.getchannel("A"))
            normalised = canvas
        return normalised
