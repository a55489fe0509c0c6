"""Ken Burns: the seed's zoompan recipe against ours, on the same real photo, in one run.

Usage::

    .venv/bin/python bench/kenburns.py [--photo PATH] [--duration-s 6.5] [--crf 23] [--preset medium]

Prints, for each pipeline: wall time, CPU time (process + children) and peak RSS of

* the **render stage**: everything but the encoder, frames sent to FFmpeg's null muxer;
* **end to end**: photo in, H.264 MP4 out (libx264 at the given CRF and preset);
* **encode only**: the same frames, pre-rendered to a raw file, encoded with the same settings (the
  floor a CPU pipeline cannot beat);

Peak RSS is given for the Python process and for its largest FFmpeg child separately (VmHWM from
/proc, sampled every 20 ms for FFmpeg; for the seed the Python side is only the bench's own launcher,
and the sampler's own CPU, well under 1 %, is counted in every stage alike). Then the ratios (seed / ours for the render stage; end to end / encode only for each), the motion
error of each output against its own ideal trajectory (markers stamped on the photo, tracked in
the decoded file), and SSIM of each output against an ideal float-precise rendering (Pillow Lanczos
from the original photo at exact float windows, cover-cropped).

Each stage runs in a child process (``--stage``) so its CPU time and peak RSS are its own.
The seed recipe is the seed API's: ``scale=6720:3840,zoompan=z='min(1+0.324*on/N,1.324)'``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.measure import marker_grid, motion_error, ssim, stamp_markers  # noqa: E402
from worker_image import ffmpeg  # noqa: E402
from worker_image.contract import ClipJob, FileOutput, RenderSettings  # noqa: E402
from worker_image.engine import render_clip  # noqa: E402
from worker_image.imaging import load_image  # noqa: E402
from worker_image.kenburns import KenBurnsClip, cover_window, zoom_at  # noqa: E402
from worker_image import engine as _engine  # noqa: E402,F401  (the baseline imports what ours-e2e uses)

W, H, FPS = 1920, 1080, 24
SEED_ZOOM = 0.324
DEFAULT_PHOTO = REPO.parent / "shared" / "media" / "photos" / "boats_2560x1600.jpg"


# ---------------------------------------------------------------- argv of the seed's recipe
def seed_filter(frames: int) -> str:
    """The seed's filtergraph: upscale to 6720x3840, then zoompan (whole-pixel crop) to 1920x1080."""
    return (
        "scale=6720:3840,"
        f"zoompan=z='min(1+{SEED_ZOOM}*on/{frames},1.324)':d={frames}:"
        "x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':"
        f"s={W}x{H}:fps={FPS},format=yuv420p"
    )


def seed_argv(photo: Path, frames: int, output_args: list[str]) -> list[str]:
    """The seed's command for ``frames`` frames of ``photo``; ``output_args`` is the output part."""
    return [ffmpeg.FFMPEG, *ffmpeg.BASE_ARGS, "-loop", "1", "-framerate", str(FPS), "-i", str(photo),
            "-vf", seed_filter(frames), "-frames:v", str(frames), *output_args]


def x264_args(crf: int, preset: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-profile:v", "high", "-pix_fmt", "yuv420p"]


def raw_input_args(frames: int) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}", "-framerate", str(FPS), "-i", "pipe:0",
            "-frames:v", str(frames)]


# ---------------------------------------------------------------- stages (run in a child process)
def our_frames(photo: Path, frames: int):
    settings = RenderSettings()
    image = load_image(photo, max_pixels=settings.max_image_pixels, needed_size=(round(W * 1.324), round(H * 1.324)))
    return KenBurnsClip(image, width_px=W, height_px=H, frames=frames, zoom_start=1.0, zoom_end=1.324).iter_frames()


def run_stage(stage: str, photo: Path, frames: int, crf: int, preset: str, out: Path) -> None:
    null = ["-f", "null", "-"]
    if stage == "baseline":
        return  # interpreter start-up and imports only: subtracted from every stage
    if stage == "seed-render":
        ffmpeg.run(seed_argv(photo, frames, null), timeout_s=600)
    elif stage == "ours-render":
        ffmpeg.run([ffmpeg.FFMPEG, *ffmpeg.BASE_ARGS, *raw_input_args(frames), *null], timeout_s=600,
                   stdin_chunks=our_frames(photo, frames))
    elif stage == "seed-e2e":
        ffmpeg.run(seed_argv(photo, frames, [*x264_args(crf, preset), "-movflags", "+faststart", "-y", str(out)]),
                   timeout_s=1200)
    elif stage == "ours-e2e":
        settings = RenderSettings(crf=crf, x264_preset=preset, encoder="libx264")
        render_clip(ClipJob(id="bench", image_url=str(photo), duration_s=frames / FPS, filename=out.name,
                            output=FileOutput(path=str(out))), settings, allow_local_inputs=True)
    elif stage in ("seed-encode-only", "ours-encode-only"):
        raw = out.with_suffix(".yuv")
        with open(raw, "rb") as fh:
            chunks = iter(lambda: fh.read(W * H * 3 // 2), b"")
            ffmpeg.run([ffmpeg.FFMPEG, *ffmpeg.BASE_ARGS, *raw_input_args(frames), *x264_args(crf, preset),
                        "-movflags", "+faststart", "-y", str(out)], timeout_s=1200, stdin_chunks=chunks)
    else:
        raise SystemExit(f"unknown stage {stage}")


def _vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak resident set of a process, MB, from /proc/<pid>/status ``VmHWM`` (reset at exec, unlike
    getrusage's ru_maxrss, which Linux carries over from the parent across fork + exec)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class ChildPeak:
    """Samples ``VmHWM`` of this process's child processes (the FFmpeg it runs) every 20 ms."""

    def __init__(self) -> None:
        import threading

        self.peak_mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/stat") as fh:
                            ppid = fh.read().rsplit(")", 1)[1].split()[1]
                    except (OSError, IndexError):
                        continue
                    if ppid == me:
                        self.peak_mb = max(self.peak_mb, _vm_hwm_mb(entry))
            self._stop.wait(0.02)

    def __enter__(self) -> "ChildPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child_main(args: argparse.Namespace) -> None:
    with ChildPeak() as children:
        run_stage(args.stage, Path(args.photo), args.frames, args.crf, args.preset, Path(args.out))
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "py_rss_mb": _vm_hwm_mb(),
        "ffmpeg_rss_mb": children.peak_mb,
    }))


def measure(stage: str, photo: Path, frames: int, crf: int, preset: str, out: Path) -> dict[str, float]:
    """Run one stage in a child process; wall time measured here, CPU and RSS reported by the child."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--photo", str(photo), "--frames", str(frames),
                           "--crf", str(crf), "--preset", preset, "--out", str(out)],
                          check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return {"wall_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------- raw frames for encode-only
def dump_ours(photo: Path, frames: int, raw: Path) -> None:
    with open(raw, "wb") as fh:
        for frame in our_frames(photo, frames):
            fh.write(frame)


def dump_seed(photo: Path, frames: int, raw: Path) -> None:
    ffmpeg.run(seed_argv(photo, frames, ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-y", str(raw)]), timeout_s=600)


# ---------------------------------------------------------------- quality
def decode_gray(path: Path, matrix: str, frames: list[int]) -> np.ndarray:
    """Decoded frames ``frames`` as float32 gray (via RGB with the stream's intended matrix), so both
    pipelines compare in the same space: the seed's output is untagged (swscale's BT.601 default),
    ours is tagged BT.709. Streams the decode and keeps only the frames asked for."""
    wanted = set(frames)
    proc = subprocess.Popen(
        [ffmpeg.FFMPEG, *ffmpeg.BASE_ARGS, "-i", str(path), "-vf",
         f"scale=in_color_matrix={matrix}:in_range=tv:out_range=pc,format=rgb24", "-f", "rawvideo", "-"],
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    size, out, n = W * H * 3, [], 0
    weights = np.array([0.2126, 0.7152, 0.0722], np.float32)
    while chunk := proc.stdout.read(size):
        if n in wanted:
            out.append(np.frombuffer(chunk, np.uint8).reshape(H, W, 3).astype(np.float32) @ weights)
        n += 1
    proc.wait()
    return np.array(out)


def ideal_gray(photo_rgb: Image.Image, frames: int, indices: list[int], zoom_of) -> np.ndarray:
    """Float-precise reference frames: Pillow Lanczos over the exact float window of the original."""
    cover = cover_window(photo_rgb.width, photo_rgb.height, W, H)
    out = []
    for n in indices:
        z = zoom_of(n)
        w, h = cover.w / z, cover.h / z
        x0, y0 = cover.x0 + (cover.w - w) / 2, cover.y0 + (cover.h - h) / 2
        frame = photo_rgb.resize((W, H), Image.Resampling.LANCZOS, box=(x0, y0, x0 + w, y0 + h))
        out.append(np.asarray(frame, np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=str(DEFAULT_PHOTO if DEFAULT_PHOTO.exists() else REPO / "examples/photos/leaf_1920x1080.jpg"))
    parser.add_argument("--duration-s", type=float, default=6.5)
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--stage")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.stage:
        return child_main(args)

    photo = Path(args.photo)
    frames = round(args.duration_s * FPS)
    image = Image.open(photo).convert("RGB")
    print(f"photo {photo.name} {image.width}x{image.height}, {frames} frames {W}x{H}@{FPS}, libx264 crf {args.crf} "
          f"preset {args.preset}, {os.cpu_count()} CPUs\n")
    tmp = Path(tempfile.mkdtemp(prefix="bench-kb-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    # the engine reads local inputs only from allowed folders: the photo's and our scratch folder
    os.environ["API_GPU_LOCAL_INPUT_ROOTS"] = os.pathsep.join([str(photo.resolve().parent), str(tmp)])
    try:
        dump_ours(photo, frames, tmp / "ours-encode-only.yuv")
        dump_seed(photo, frames, tmp / "seed-encode-only.yuv")
        rows = {}
        for stage in ("baseline", "seed-render", "ours-render", "seed-e2e", "ours-e2e", "seed-encode-only", "ours-encode-only"):
            rows[stage] = measure(stage, photo, frames, args.crf, args.preset, tmp / f"{stage}.mp4")
        base = rows.pop("baseline")
        print(f"baseline (Python start-up + imports, subtracted below): wall {base['wall_s']:.2f} s, "
              f"CPU {base['cpu_s']:.2f} s, Python RSS {base['py_rss_mb']:.0f} MB\n")
        net = {k: {**r, "wall_s": r["wall_s"] - base["wall_s"], "cpu_s": r["cpu_s"] - base["cpu_s"]}
               for k, r in rows.items()}
        print(f"{'stage':<18}{'wall s':>9}{'CPU s':>9}{'py RSS MB':>11}{'ffmpeg RSS MB':>15}   (times net of baseline)")
        for stage, r in net.items():
            print(f"{stage:<18}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}{r['py_rss_mb']:>11.0f}{r['ffmpeg_rss_mb']:>15.0f}")

        def ratio(a: str, b: str, key: str) -> float:
            return net[a][key] / net[b][key]

        print("\nratios")
        print(f"  render stage, seed / ours:          wall {ratio('seed-render', 'ours-render', 'wall_s'):.2f}x   "
              f"CPU {ratio('seed-render', 'ours-render', 'cpu_s'):.2f}x   (target >= 3x)")
        for who in ("ours", "seed"):
            print(f"  {who} end to end / encode only:     wall {ratio(f'{who}-e2e', f'{who}-encode-only', 'wall_s'):.3f}   "
                  f"CPU {ratio(f'{who}-e2e', f'{who}-encode-only', 'cpu_s'):.3f}" + ("   (target <= 1.10)" if who == "ours" else ""))

        # quality: SSIM against the ideal, on every 6th frame
        indices = list(range(0, frames, 6))

        def ours_zoom(n: int) -> float:
            return zoom_at(n, frames, 1.0, 1.324)

        def seed_zoom(n: int) -> float:
            return min(1 + SEED_ZOOM * n / frames, 1.324)

        results = {}
        for who, matrix, zoom_of in (("seed", "bt601", seed_zoom), ("ours", "bt709", ours_zoom)):
            got = decode_gray(tmp / f"{who}-e2e.mp4", matrix, indices)
            ref = ideal_gray(image, frames, indices, zoom_of)
            results[who] = {"ssim": float(np.mean([ssim(g, r) for g, r in zip(got, ref)]))}

        # motion: markers on the photo, through each full pipeline, tracked against each ideal trajectory
        centres = marker_grid(image.width, image.height)
        marked = tmp / "marked.png"
        stamp_markers(image, centres).save(marked)
        sx_seed, sy_seed = W / image.width, H / image.height  # the seed scales the whole image (stretch)
        cover = cover_window(image.width, image.height, W, H)
        for who, zoom_of in (("seed", seed_zoom), ("ours", ours_zoom)):
            out = tmp / f"{who}-marked.mp4"
            run_stage(f"{who}-e2e", marked, frames, args.crf, args.preset, out)
            planes = decode_gray(out, "bt601" if who == "seed" else "bt709", list(range(frames)))

            def predict(n: int, x: float, y: float, who=who, zoom_of=zoom_of) -> tuple[float, float]:
                z = zoom_of(n)
                if who == "seed":
                    return W / 2 + (x - image.width / 2) * sx_seed * z, H / 2 + (y - image.height / 2) * sy_seed * z
                s = z * W / cover.w
                return W / 2 + (x - (cover.x0 + cover.w / 2)) * s, H / 2 + (y - (cover.y0 + cover.h / 2)) * s

            results[who].update(motion_error(planes, centres, predict))
        print(f"\n{'pipeline':<10}{'SSIM vs ideal':>15}{'motion rms px':>15}{'motion max px':>15}{'jitter rms px':>15}")
        for who in ("seed", "ours"):
            r = results[who]
            print(f"{who:<10}{r['ssim']:>15.4f}{r['rms_px']:>15.4f}{r['max_px']:>15.4f}{r['jitter_rms_px']:>15.4f}")
        print(f"\nSSIM ours - seed: {results['ours']['ssim'] - results['seed']['ssim']:+.4f} (target >= 0)")
        print("(motion is measured in the encoded files, so it includes the encoder's own quantisation noise;"
              " tests/worker/test_motion.py isolates the renderer)")
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
