"""Measurements on rendered video: marker tracking (motion error) and SSIM.

Used by ``bench/kenburns.py`` and by the tests, so both report the same numbers.

Motion error: high-contrast markers (a white disc with a dark Gaussian dot) are stamped onto a photo
at known positions; each frame's dot centre is measured in the decoded Y' plane and compared with
where the ideal, float-exact trajectory puts it. The centre is an intensity-weighted centroid under a
smooth Gaussian window that is re-centred on the estimate until it settles: a hard-edged window jumps
with the dot's sub-pixel phase and adds ~0.03 px of error of its own (measured on a Lanczos render
straight from the source), the smooth one does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

#: Marker geometry in source pixels: white disc radius and dot sigma. At the 2560-px sources we use,
#: output scale is 0.75..1.0, so the dot spans ~5 output pixels: large enough to centroid precisely,
#: small enough to stay inside the disc with the tracking window.
DISC_RADIUS_SRC = 32.0
DOT_SIGMA_SRC = 4.0


def marker_grid(width: int, height: int, *, cols: int = 4, rows: int = 3, margin: float = 0.28) -> list[tuple[float, float]]:
    """Marker centres (continuous coords) on a grid inside the central part of a ``width x height`` image,
    away from the centre (which does not move) and from the edges (which leave the frame when zooming)."""
    xs = np.linspace(width * margin, width * (1 - margin), cols)
    ys = np.linspace(height * margin, height * (1 - margin), rows)
    return [(float(x) + 0.37, float(y) + 0.61) for y in ys for x in xs]  # off-grid fractions on purpose


def stamp_markers(image: Image.Image, centres: Sequence[tuple[float, float]]) -> Image.Image:
    """A copy of ``image`` (RGB) with a white disc + dark Gaussian dot centred on each point."""
    arr = np.asarray(image.convert("RGB"), np.float64).copy()
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for cx, cy in centres:
        x0, x1 = int(cx - 2 * DISC_RADIUS_SRC), int(cx + 2 * DISC_RADIUS_SRC)
        y0, y1 = int(cy - 2 * DISC_RADIUS_SRC), int(cy + 2 * DISC_RADIUS_SRC)
        px, py = xx[y0:y1, x0:x1] + 0.5, yy[y0:y1, x0:x1] + 0.5
        r2 = (px - cx) ** 2 + (py - cy) ** 2
        disc = np.clip(DISC_RADIUS_SRC + 0.5 - np.sqrt(r2), 0, 1)[..., None]  # anti-aliased edge
        dot = np.exp(-r2 / (2 * DOT_SIGMA_SRC**2))[..., None]
        patch = arr[y0:y1, x0:x1]
        patch[:] = patch * (1 - disc) + 255.0 * disc
        patch[:] = patch * (1 - dot)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def centroid(plane: np.ndarray, guess: tuple[float, float], *, half: int = 14, window_sigma: float = 5.0,
             passes: int = 8) -> tuple[float, float]:
    """Sub-pixel centre (continuous coords) of a dark dot on a bright disc near ``guess``.

    Weight = (bright level - intensity) clipped at 0, times a Gaussian window of ``window_sigma``
    pixels centred on the current estimate, over a (2*half+1)^2 patch inside the disc; re-centred
    ``passes`` times (a symmetric dot is the fixed point).
    """
    x, y = guess
    h, w = plane.shape
    ix, iy = int(np.floor(x)), int(np.floor(y))
    x0, x1, y0, y1 = max(ix - half, 0), min(ix + half + 1, w), max(iy - half, 0), min(iy + half + 1, h)
    win = plane[y0:y1, x0:x1].astype(np.float64)
    signal = np.clip(np.percentile(win, 90) - win, 0, None)
    gy, gx = np.mgrid[y0:y1, x0:x1]
    cx, cy = gx + 0.5, gy + 0.5
    for _ in range(passes):
        weight = signal * np.exp(-((cx - x) ** 2 + (cy - y) ** 2) / (2 * window_sigma**2))
        total = weight.sum()
        if total <= 0:
            return float("nan"), float("nan")
        x, y = float((weight * cx).sum() / total), float((weight * cy).sum() / total)
    return x, y


def motion_error(
    y_frames: np.ndarray,
    centres: Sequence[tuple[float, float]],
    predict: Callable[[int, float, float], tuple[float, float]],
) -> dict[str, float]:
    """Track every marker in every frame and compare with the ideal trajectory.

    Args:
        y_frames: (N, H, W) luma planes.
        centres: Marker centres in the source image.
        predict: ``(frame_index, x_src, y_src) -> (x_out, y_out)``, the ideal trajectory.

    Returns:
        ``rms_px`` and ``max_px`` of the 2-D position error over all frames and markers, plus
        ``jitter_rms_px``: the rms of the frame-to-frame change of that error (how much the picture
        shakes, independent of any constant offset), and ``samples``.
    """
    errors = np.full((len(y_frames), len(centres), 2), np.nan)
    for n, plane in enumerate(y_frames):
        for m, (sx, sy) in enumerate(centres):
            px, py = predict(n, sx, sy)
            mx, my = centroid(plane, (px, py))
            errors[n, m] = (mx - px, my - py)
    valid = np.isfinite(errors).all(axis=2)
    dist = np.linalg.norm(errors, axis=2)[valid]
    step = np.diff(errors, axis=0)
    step_ok = np.isfinite(step).all(axis=2)
    jitter = np.linalg.norm(step, axis=2)[step_ok]
    return {
        "rms_px": float(np.sqrt(np.mean(dist**2))),
        "max_px": float(dist.max()),
        "jitter_rms_px": float(np.sqrt(np.mean(jitter**2))),
        "samples": int(valid.sum()),
    }


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two same-size 8-bit luma planes (Wang et al. 2004: 11x11 Gaussian window,
    sigma 1.5, K1 0.01, K2 0.03, L 255)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())
