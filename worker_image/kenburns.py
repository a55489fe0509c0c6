"""Ken Burns geometry and frames: a centred, sub-pixel zoom over a cover-cropped still.

Coordinates are continuous pixel coordinates: pixel ``k`` covers ``[k, k+1)``, its centre is ``k+0.5``.

Pipeline (one clip):

1. **Cover window.** The largest rectangle of the output aspect, centred in the image (the image is
   cover-cropped, never stretched: a square stays square).
2. **Base raster.** When the photo's resolution is about what the deepest zoom needs, its own pixels
   are the base (no resample). Otherwise the cover window is resampled once, with Pillow's Lanczos
   filter over the exact float box, to ``zoom_max`` times the output size (or up to the output size for
   small photos). The base is converted to Y'CbCr (BT.709 matrix, limited range, as tagged on the
   output) with chroma averaged 2x2.
3. **Frames.** Frame ``n`` shows the centred window ``base / z(n)``, with ``z`` linear in ``n`` from
   ``zoom_start`` on the first frame to ``zoom_end`` on the last (the seed's zoom law, made exact at
   both ends). Each plane is resampled with OpenCV's bilinear ``warpAffine`` from that float window;
   positions are resolved to 1/32 pixel (OpenCV's INTER_BITS), so the window is never snapped to
   whole pixels: motion error is ~0.01 px rms (measured in ``bench/kenburns.py`` and the tests).
   Chroma is written at the H.264 default siting (left, MPEG-2 style).

The seed recipe (scale to 6720x3840 then ``zoompan``) rounds its crop to whole pixels of the upscaled
image (~0.3 output px jitter) and stretches non-16:9 images; this module does neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

#: BT.709 luma coefficients (ITU-R BT.709-6, item 3.2).
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB

#: A photo whose cover window is at most this much larger than the deepest zoom needs is used at its
#: own resolution; frames then downscale it by up to zoom_max x 1.25 with bilinear sampling. Larger
#: photos are first reduced with Lanczos (once per clip), smaller ones enlarged to the output size.
NATIVE_SCALE_SLACK = 1.25

# OpenCV threads inside one warpAffine call only add overhead at 1080p; parallelism comes from
# rendering clips concurrently and from the encoder.
_CV2_THREADS = 1


@dataclass(frozen=True)
class Window:
    """A rectangle in continuous pixel coordinates (floats): left ``x0``, top ``y0``, size ``w`` x ``h``."""

    x0: float
    y0: float
    w: float
    h: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom), as Pillow's ``resize(box=...)`` takes it."""
        return (self.x0, self.y0, self.x0 + self.w, self.y0 + self.h)


def cover_window(src_w: float, src_h: float, out_w: int, out_h: int) -> Window:
    """The largest centred window of aspect ``out_w:out_h`` inside a ``src_w x src_h`` image."""
    aspect = out_w / out_h
    if src_w / src_h > aspect:
        w, h = src_h * aspect, float(src_h)
    else:
        w, h = float(src_w), src_w / aspect
    return Window((src_w - w) / 2.0, (src_h - h) / 2.0, w, h)


def zoom_at(n: int, frames: int, zoom_start: float, zoom_end: float) -> float:
    """Zoom factor of frame ``n`` (0-based) of ``frames``: linear from zoom_start to zoom_end inclusive.

    Strictly monotonic whenever zoom_start != zoom_end and frames > 1. A 1-frame clip shows zoom_start.
    """
    if frames <= 1:
        return zoom_start
    return zoom_start + (zoom_end - zoom_start) * (n / (frames - 1))


def zoomed_window(cover: Window, zoom: float) -> Window:
    """The window showing ``1/zoom`` of ``cover``, sharing its centre."""
    w, h = cover.w / zoom, cover.h / zoom
    return Window(cover.x0 + (cover.w - w) / 2.0, cover.y0 + (cover.h - h) / 2.0, w, h)


def base_raster_size(cover: Window, out_w: int, out_h: int, zoom_max: float) -> tuple[int, int]:
    """Even (width, height) of the base raster: the cover window's own resolution, clamped between the
    output size and ``zoom_max`` times it (more would be resampled away; less would lose detail)."""
    scale = min(max(cover.w / out_w, 1.0), zoom_max)
    return 2 * max(1, round(out_w * scale / 2)), 2 * max(1, round(out_h * scale / 2))


def luma_matrix(win: Window, out_w: int, out_h: int) -> np.ndarray:
    """2x3 inverse map for ``cv2.warpAffine`` (WARP_INVERSE_MAP): output pixel (i, j) -> source position.

    Output pixel centre ``i + 0.5`` maps to ``x0 + (i + 0.5) * sx``; OpenCV indexes pixel centres at
    integers, hence the ``- 0.5`` on both sides.
    """
    sx, sy = win.w / out_w, win.h / out_h
    return np.array([[sx, 0.0, win.x0 + 0.5 * sx - 0.5], [0.0, sy, win.y0 + 0.5 * sy - 0.5]], dtype=np.float64)


def chroma_matrix(win: Window, out_w: int, out_h: int) -> np.ndarray:
    """2x3 inverse map from output chroma samples to the half-resolution base chroma plane.

    H.264's default chroma location (left): chroma sample ``m`` sits on luma column ``2m`` and between
    luma rows ``2m`` and ``2m+1``. Base chroma is a 2x2 average, so its sample ``k`` is centred at luma
    coordinate ``2k + 1``.
    """
    sx, sy = win.w / out_w, win.h / out_h
    return np.array(
        [[sx, 0.0, win.x0 / 2 + 0.25 * sx - 0.5], [0.0, sy, win.y0 / 2 + 0.5 * sy - 0.5]], dtype=np.float64
    )


#: R'G'B' (0..255) -> limited-range Y'CbCr code values, BT.709-6 items 3.2-3.5 and 4.6: rows Y', Cb,
#: Cr; last column the offset. Applied by ``cv2.transform`` with rounding and saturation to uint8.
_RGB_TO_YCBCR709 = np.array(
    [
        [219 / 255 * KR, 219 / 255 * KG, 219 / 255 * KB, 16.0],
        [224 / 255 * -KR / (2 * (1 - KB)), 224 / 255 * -KG / (2 * (1 - KB)), 224 / 255 * 0.5, 128.0],
        [224 / 255 * 0.5, 224 / 255 * -KG / (2 * (1 - KR)), 224 / 255 * -KB / (2 * (1 - KR)), 128.0],
    ],
    dtype=np.float32,
)


def rgb_to_ycbcr709(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-bit R'G'B' (H x W x 3, H and W even) -> (Y', Cb, Cr) uint8 planes, BT.709 limited range.

    Y' is full size; Cb and Cr are averaged over 2x2 blocks (H/2 x W/2). Ranges: Y' 16..235,
    Cb/Cr 16..240 (BT.709-6 item 4.6 quantisation).
    """
    h, w = rgb.shape[:2]
    ycbcr = cv2.transform(np.ascontiguousarray(rgb), _RGB_TO_YCBCR709)
    y, cb, cr = cv2.split(ycbcr)
    half = (w // 2, h // 2)
    return y, cv2.resize(cb, half, interpolation=cv2.INTER_AREA), cv2.resize(cr, half, interpolation=cv2.INTER_AREA)


def _even_crop(rgb: np.ndarray, cover: Window) -> tuple[np.ndarray, Window]:
    """The whole-pixel box around ``cover`` with even width and height (edge pixels repeated if the
    image is too small), and ``cover`` in that box's coordinates. No resampling."""
    h, w = rgb.shape[:2]
    x0, y0 = int(np.floor(cover.x0 + 1e-9)), int(np.floor(cover.y0 + 1e-9))
    x1, y1 = int(np.ceil(cover.x0 + cover.w - 1e-9)), int(np.ceil(cover.y0 + cover.h - 1e-9))
    if (x1 - x0) % 2:
        x1, x0 = (x1 + 1, x0) if x1 < w else (x1, x0 - 1) if x0 > 0 else (x1, x0)
    if (y1 - y0) % 2:
        y1, y0 = (y1 + 1, y0) if y1 < h else (y1, y0 - 1) if y0 > 0 else (y1, y0)
    box = rgb[y0:y1, x0:x1]
    pad_y, pad_x = box.shape[0] % 2, box.shape[1] % 2
    if pad_y or pad_x:
        box = np.pad(box, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
    return box, Window(cover.x0 - x0, cover.y0 - y0, cover.w, cover.h)


class KenBurnsClip:
    """Frames of one Ken Burns clip as raw yuv420p, produced one at a time.

    Args:
        image: Upright 8-bit RGB image (see ``imaging.load_image``).
        width_px, height_px: Output size (even).
        frames: Number of frames to produce (round(duration_s x fps)).
        zoom_start, zoom_end: Zoom on the first and last frame (>= 1).

    Memory: the base raster (<= zoom_max^2 x output pixels x 1.5 bytes) plus one output frame buffer.
    """

    def __init__(self, image: Image.Image, *, width_px: int, height_px: int, frames: int,
                 zoom_start: float, zoom_end: float) -> None:
        self.width_px, self.height_px, self.frames = width_px, height_px, frames
        self.zoom_start, self.zoom_end = zoom_start, zoom_end
        cover = cover_window(image.width, image.height, width_px, height_px)
        zoom_max = max(zoom_start, zoom_end)
        scale = cover.w / width_px
        if 1.0 <= scale <= zoom_max * NATIVE_SCALE_SLACK:
            # The photo's own pixels already hold the detail the deepest zoom needs and not much more:
            # use them as they are (no resample, no blur).
            rgb, self.cover = _even_crop(np.asarray(image), cover)
        else:
            bw, bh = base_raster_size(cover, width_px, height_px, zoom_max)
            reducing_gap = 2.0 if cover.w > 2 * bw else None
            rgb = np.asarray(image.resize((bw, bh), Image.Resampling.LANCZOS, box=cover.box, reducing_gap=reducing_gap))
            self.cover = Window(0.0, 0.0, float(bw), float(bh))
        self.base_y, self.base_cb, self.base_cr = rgb_to_ycbcr709(rgb)

    def frame_size_bytes(self) -> int:
        """Bytes in one yuv420p frame: width x height x 3/2."""
        return self.width_px * self.height_px * 3 // 2

    def window(self, n: int) -> Window:
        """The base-raster window shown by frame ``n``."""
        return zoomed_window(self.cover, zoom_at(n, self.frames, self.zoom_start, self.zoom_end))

    def iter_frames(self) -> Iterator[memoryview]:
        """Yield each frame as a memoryview of one reused yuv420p buffer (consume it before the next)."""
        cv2.setNumThreads(_CV2_THREADS)
        w, h = self.width_px, self.height_px
        buf = np.empty(self.frame_size_bytes(), dtype=np.uint8)
        y = buf[: w * h].reshape(h, w)
        cb = buf[w * h : w * h + w * h // 4].reshape(h // 2, w // 2)
        cr = buf[w * h + w * h // 4 :].reshape(h // 2, w // 2)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        for n in range(self.frames):
            win = self.window(n)
            cv2.warpAffine(self.base_y, luma_matrix(win, w, h), (w, h), dst=y, flags=flags,
                           borderMode=cv2.BORDER_REPLICATE)
            m = chroma_matrix(win, w, h)
            cv2.warpAffine(self.base_cb, m, (w // 2, h // 2), dst=cb, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            cv2.warpAffine(self.base_cr, m, (w // 2, h // 2), dst=cr, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            yield memoryview(buf)


def ideal_position(x_src: float, y_src: float, *, image_w: int, image_h: int, width_px: int, height_px: int,
                   zoom: float) -> tuple[float, float]:
    """Where a point of the original image lands in the output frame at ``zoom`` (continuous coords).

    The ideal trajectory the motion-error measurements compare against: pure centred scaling of the
    cover window, ``out = c_out + (p - c_src) * zoom * out_w / cover_w``.
    """
    cover = cover_window(image_w, image_h, width_px, height_px)
    s = zoom * width_px / cover.w
    cx, cy = cover.x0 + cover.w / 2, cover.y0 + cover.h / 2
    return width_px / 2 + (x_src - cx) * s, height_px / 2 + (y_src - cy) * s

