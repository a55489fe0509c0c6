"""The caption flow end to end on Prefect's test harness: seed request in, seed-shaped response out.

Renders use a 2.4 s, 320x180 cut of Big Buck Bunny (with its 5.1 audio) and the shared Portuguese SRT,
whose cues run 0.3-1.9, 2.0-3.6 and 3.7-5.1 s: on the cut, cue 1 is drawn whole, cue 2 is clipped at
the end and cue 3 is dropped. libx264 "superfast" keeps the shared 2 cores free.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.caption import caption, main
from tests.conftest import REPO_ROOT
from tests.mediatools import ffprobe_json
from tests.worker.test_caption import CUE_MIN, NOISE_MAX, _audio_packet_hashes, band_diff, gray_frame, make_clip

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAST = {"encoder": "libx264", "x264_preset": "superfast"}
FRAME_S = 1 / 25
RESPONSE_KEYS = {
    "code", "message", "video_url", "execution", "stats",  # the seed's
    "filename", "key", "url_kind", "duration_s", "frames", "width", "height", "size_bytes", "encoder", "error",
    "subtitle_format", "subtitle_encoding", "cues", "cues_clipped", "cues_dropped", "missing_glyphs", "warnings",
}


@pytest.fixture(scope="module")
def clip(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2.4 s of Big Buck Bunny at 320x180, H.264 + its 5.1 AAC audio (copied)."""
    return make_clip(media_dir / "videos" / "bigbuckbunny_720p25_5ch.mp4",
                     tmp_path_factory.mktemp("caption-flow") / "bbb_2.4s.mp4", seconds=2.4)


@pytest.fixture(scope="module")
def srt(media_dir: Path) -> Path:
    return media_dir / "subtitles" / "legendas_ptbr.srt"


async def _artifacts(flow_run_id: str) -> dict[str, object]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_seed_request_over_http_burns_the_cues_and_copies_the_audio(clip: Path, srt: Path, renders_dir: Path, origin):
    body = {
        "url_video": origin.add("/in/video.mp4", clip.read_bytes(), content_type="video/mp4"),
        "url_srt": origin.add("/in/legendas.srt", srt.read_bytes(), content_type="application/x-subrip"),
        "path": "Projeto Ação/Vídeo 1/videos/",
        "output_filename": "video_legendado.mp4",
    }
    state = caption(**body, settings=FAST, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert set(result) == RESPONSE_KEYS
    out = renders_dir / "Projeto Ação" / "Vídeo 1" / "videos" / "video_legendado.mp4"
    assert result["code"] == 200 and result["error"] is None and "video_legendado.mp4" in result["message"]
    assert result["key"] == "Projeto Ação/Vídeo 1/videos/video_legendado.mp4"
    assert result["video_url"] == out.as_uri() and result["url_kind"] == "file"
    assert result["size_bytes"] == out.stat().st_size and result["encoder"] == "libx264"
    assert (result["cues"], result["cues_clipped"], result["cues_dropped"]) == (2, 1, 1)
    assert (result["subtitle_format"], result["subtitle_encoding"], result["missing_glyphs"]) == ("srt", "utf-8", [])
    assert result["stats"] == {"jobId": result["stats"]["jobId"], "total": 1, "processed": 1, "failed": 0}
    assert result["stats"]["jobId"] and result["execution"]["durationMs"] > 0
    assert origin.routes["/in/video.mp4"].hits == 1 and origin.routes["/in/legendas.srt"].hits == 1

    probe_in, probe_out = ffprobe_json(clip), ffprobe_json(out)
    video = next(s for s in probe_out["streams"] if s["codec_type"] == "video")
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (int(video["width"]), int(video["height"])) == (result["width"], result["height"]) == (320, 180)
    assert int(video["nb_read_frames"]) == result["frames"] == 60
    assert abs(float(probe_out["format"]["duration"]) - float(probe_in["format"]["duration"])) <= FRAME_S
    assert result["duration_s"] == pytest.approx(float(probe_out["format"]["duration"]), abs=1e-3)
    assert _audio_packet_hashes(out) == _audio_packet_hashes(clip)  # audio copied packet for packet

    bottom = (0.75, 1.0)
    assert band_diff(gray_frame(clip, 1.0), gray_frame(out, 1.0), bottom) > CUE_MIN  # inside cue 1
    assert band_diff(gray_frame(clip, 2.2), gray_frame(out, 2.2), bottom) > CUE_MIN  # inside cue 2 (clipped)
    assert band_diff(gray_frame(clip, 0.1), gray_frame(out, 0.1), bottom) < NOISE_MAX  # before cue 1

    artifacts = asyncio.run(_artifacts(result["stats"]["jobId"]))
    assert {"caption-table", "caption-result"} <= set(artifacts)
    table = artifacts["caption-table"].data
    rows = table if isinstance(table, list) else json.loads(table)
    assert len(rows) == 1 and rows[0]["url"] == result["video_url"] and rows[0]["cues"] == 2


def test_cli_runs_the_example_request(media_dir: Path, renders_dir: Path, tmp_path: Path, capsys):
    body = json.loads((REPO_ROOT / "examples" / "caption_request.json").read_text(encoding="utf-8"))
    for field in ("url_video", "url_srt"):
        body[field] = str(REPO_ROOT / body[field])  # the example's paths are relative to the repo
        assert Path(body[field]).is_file()
    body["settings"] = FAST
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body), encoding="utf-8")
    assert main([str(request)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[: printed.rindex("}") + 1])
    out = renders_dir / body["path"] / body["output_filename"]
    assert result["code"] == 200 and result["video_url"] == out.as_uri() and out.is_file()
    assert (result["cues"], result["width"], result["height"], result["frames"]) == (3, 1280, 720, 132)
    assert f"video is at: {out}" in printed


@pytest.mark.parametrize("name", ["../x.mp4", "x.mov", "sub/x.mp4", ".mp4"])
def test_bad_output_filename_is_refused_naming_the_field(name: str, clip: Path, srt: Path, renders_dir: Path):
    state = caption(url_video=str(clip), url_srt=str(srt), path="out/", output_filename=name, return_state=True)
    assert state.is_failed() and "output_filename" in state.message
    assert not renders_dir.exists()


def test_unsafe_path_is_refused(clip: Path, srt: Path, renders_dir: Path):
    state = caption(url_video=str(clip), url_srt=str(srt), path="../outside/", output_filename="x.mp4",
                    return_state=True)
    assert state.is_failed() and "path" in state.message and ".." in state.message
    assert not renders_dir.exists()


def test_html_page_as_subtitles_fails_with_an_input_error_naming_url_srt(clip: Path, renders_dir: Path, origin):
    video = origin.add("/v.mp4", clip.read_bytes(), content_type="video/mp4")
    page = origin.add("/legendas.srt", b"<!DOCTYPE html><html><body>Please log in</body></html>",
                      content_type="text/html")
    state = caption(url_video=video, url_srt=page, path="p/", output_filename="out.mp4", settings=FAST,
                    return_state=True)
    assert state.is_failed()
    assert "InputError" in state.message and "url_srt" in state.message and "HTML" in state.message
    result = state.result(raise_on_failure=False)
    assert result["code"] == 422 and result["video_url"] is None and result["cues"] is None
    assert result["error"]["type"] == "InputError" and result["error"]["field"] == "url_srt"
    assert result["error"]["retryable"] is False and "out.mp4" in result["error"]["message"]
    assert result["stats"]["processed"] == 0 and result["stats"]["failed"] == 1
    assert origin.routes["/legendas.srt"].hits == 1  # bad input is not retried
    assert origin.routes["/v.mp4"].hits == 0  # the subtitles are checked before the video is fetched
    assert not (renders_dir / "p" / "out.mp4").exists()


def test_dead_video_link_is_a_download_error(srt: Path, renders_dir: Path, origin):
    state = caption(url_video=origin.base_url + "/gone.mp4", url_srt=str(srt), path="p/", output_filename="o.mp4",
                    return_state=True)
    result = state.result(raise_on_failure=False)
    assert state.is_failed() and result["code"] == 422
    assert result["error"]["type"] == "DownloadError" and result["error"]["field"] == "url_video"
    assert "404" in result["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"style": {"font_size_pct": 50}}, ["font_size_pct", "less than or equal to 20"]),
        ({"style": {"colour": "#ffffff"}}, ["colour", "Extra inputs"]),
        ({"settings": {"crf": 60}}, ["crf", "less than or equal to 51"]),
        ({"url_srt": "ftp://example.com/a.srt"}, ["url_srt", "scheme 'ftp'"]),
    ],
)
def test_out_of_bounds_options_are_refused_naming_the_field(extra, expected, renders_dir: Path):
    body = {"url_video": "https://example.com/v.mp4", "url_srt": "https://example.com/a.srt", "path": "p/",
            "output_filename": "o.mp4", **extra}
    with pytest.raises(Exception) as err:
        caption(**body)
    for text in expected:
        assert text in str(err.value)
    assert not renders_dir.exists()
