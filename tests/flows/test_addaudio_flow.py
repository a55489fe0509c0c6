"""The addaudio flow end to end on Prefect's test harness: seed request in, seed-shaped response out.

Media: Big Buck Bunny (5.28 s video, 5.1 audio) and the 10.55 s Portuguese narration MP3. With the
seed's defaults (replace, shortest) the output is the video's 5.28 s with every video packet copied, so
these renders cost an audio encode only.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.addaudio import addaudio, main
from tests.conftest import REPO_ROOT
from tests.worker.test_addaudio import assert_av, pcm, rms_db, streams, video_packets

pytestmark = pytest.mark.usefixtures("prefect_harness")

VIDEO_S = 5.28  # Big Buck Bunny's video stream; its audio (5.312 s) is replaced
RESPONSE_KEYS = {
    "code", "message", "video_url", "execution", "stats",  # the seed's
    "filename", "key", "url_kind", "duration_s", "size_bytes", "encoder", "error",
    "video_duration_s", "audio_duration_s", "video_copied",
}


@pytest.fixture(scope="module")
def media(media_dir: Path) -> dict[str, Path]:
    return {
        "bbb": media_dir / "videos" / "bigbuckbunny_720p25_5ch.mp4",
        "bikes": media_dir / "videos" / "bikes_640x272_noaudio.mp4",
        "mp3": media_dir / "audio" / "narration_ptbr.mp3",
    }


async def _artifacts(flow_run_id: str) -> dict[str, object]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_seed_request_over_http_replaces_the_audio_and_copies_the_video(media, renders_dir: Path, origin):
    body = {
        "url_video": origin.add("/in/video.mp4", media["bbb"].read_bytes(), content_type="video/mp4"),
        "url_audio": origin.add("/in/narracao.mp3", media["mp3"].read_bytes(), content_type="audio/mpeg"),
        "path": "Projeto Ação/Vídeo 1/videos/",
        "output_filename": "video_com_audio.mp4",
    }
    state = addaudio(**body, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert set(result) == RESPONSE_KEYS
    out = renders_dir / "Projeto Ação" / "Vídeo 1" / "videos" / "video_com_audio.mp4"
    assert result["code"] == 200 and result["error"] is None and "video copied" in result["message"]
    assert result["key"] == "Projeto Ação/Vídeo 1/videos/video_com_audio.mp4"
    assert result["video_url"] == out.as_uri() and result["url_kind"] == "file"
    assert result["size_bytes"] == out.stat().st_size
    assert result["video_copied"] is True and result["encoder"] == "copy"
    assert result["stats"] == {"jobId": result["stats"]["jobId"], "total": 1, "processed": 1, "failed": 0}
    assert origin.routes["/in/video.mp4"].hits == 1 and origin.routes["/in/narracao.mp3"].hits == 1

    info = assert_av(out, expected_s=VIDEO_S)  # shortest: the video; A/V within 0.05 s; AAC LC stereo 48 kHz
    assert abs(result["video_duration_s"] - result["audio_duration_s"]) <= 0.05
    assert result["duration_s"] == pytest.approx(float(info["format"]["duration"]), abs=1e-3)
    assert result["video_duration_s"] == pytest.approx(float(info["video"]["duration"]), abs=1e-3)
    assert video_packets(out) == video_packets(media["bbb"])  # every video packet, byte for byte
    assert rms_db(pcm(out)) > -40  # the narration is there, not silence

    artifacts = asyncio.run(_artifacts(result["stats"]["jobId"]))
    assert {"addaudio-table", "addaudio-result"} <= set(artifacts)
    table = artifacts["addaudio-table"].data
    rows = table if isinstance(table, list) else json.loads(table)
    assert len(rows) == 1 and rows[0]["url"] == result["video_url"] and rows[0]["video_copied"] is True


def test_cli_runs_the_example_request_with_options(renders_dir: Path, tmp_path: Path, capsys):
    body = json.loads((REPO_ROOT / "examples" / "addaudio_request.json").read_text(encoding="utf-8"))
    for field in ("url_video", "url_audio"):
        body[field] = str(REPO_ROOT / body[field])  # the example's paths are relative to the repo
        assert Path(body[field]).is_file()
    body["options"] = {"length_policy": "video", "fade_out_s": 1.0}
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    assert main([str(request)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed[: printed.rindex("}") + 1])
    out = renders_dir / body["path"] / body["output_filename"]
    assert result["code"] == 200 and result["video_url"] == out.as_uri() and out.is_file()
    assert_av(out, expected_s=VIDEO_S)
    assert f"video is at: {out}" in printed
    tail = pcm(out)[-int(0.1 * 48000):]  # the last 0.1 s of the 1 s fade-out is nearly silent
    assert rms_db(tail) < rms_db(pcm(out)) - 15


@pytest.mark.parametrize("name", ["../x.mp4", "x.mov", "sub/x.mp4"])
def test_bad_output_filename_is_refused_naming_the_field(name: str, media, renders_dir: Path):
    state = addaudio(url_video=str(media["bbb"]), url_audio=str(media["mp3"]), path="out/", output_filename=name,
                     return_state=True)
    assert state.is_failed() and "output_filename" in state.message
    assert not renders_dir.exists()


def test_audio_without_an_audio_stream_fails_with_an_input_error_naming_url_audio(media, renders_dir: Path, origin):
    video = origin.add("/v.mp4", media["bbb"].read_bytes(), content_type="video/mp4")
    silent = origin.add("/bikes.mp4", media["bikes"].read_bytes(), content_type="video/mp4")
    state = addaudio(url_video=video, url_audio=silent, path="p/", output_filename="out.mp4", return_state=True)
    assert state.is_failed()
    assert "InputError" in state.message and "url_audio" in state.message and "no audio stream" in state.message
    result = state.result(raise_on_failure=False)
    assert result["code"] == 422 and result["video_url"] is None and result["video_copied"] is None
    assert result["error"]["type"] == "InputError" and result["error"]["field"] == "url_audio"
    assert result["error"]["retryable"] is False and "out.mp4" in result["error"]["message"]
    assert result["stats"]["processed"] == 0 and result["stats"]["failed"] == 1
    assert origin.routes["/bikes.mp4"].hits == 1  # bad input is not retried
    assert not (renders_dir / "p" / "out.mp4").exists()


def test_transient_download_errors_are_retried(media, renders_dir: Path, origin):
    audio = origin.add("/flaky.mp3", media["mp3"].read_bytes(), statuses=[503, 200], content_type="audio/mpeg")
    state = addaudio(url_video=str(media["bbb"]), url_audio=audio, path="retry/", output_filename="o.mp4",
                     return_state=True)
    assert state.is_completed(), state.message
    assert origin.routes["/flaky.mp3"].hits == 2
    assert streams(renders_dir / "retry" / "o.mp4")["audio"]["codec_name"] == "aac"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"options": {"duck": True}}, ["duck", "mode='mix'"]),
        ({"options": {"volume_db": 40}}, ["volume_db", "less than or equal to 20"]),
        ({"options": {"mode": "blend"}}, ["mode", "'replace' or 'mix'"]),
        ({"url_audio": "s3://bucket/a.mp3"}, ["url_audio", "scheme 's3'"]),
    ],
)
def test_out_of_bounds_options_are_refused_naming_the_field(extra, expected, renders_dir: Path):
    body = {"url_video": "https://example.com/v.mp4", "url_audio": "https://example.com/a.mp3", "path": "p/",
            "output_filename": "o.mp4", **extra}
    with pytest.raises(Exception) as err:
        addaudio(**body)
    for text in expected:
        assert text in str(err.value)
    assert not renders_dir.exists()
