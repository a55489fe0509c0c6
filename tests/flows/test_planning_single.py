"""Planning of the one-video operations: keys, job ids, options copied, request errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import RequestError
from tasks.planning import CaptionSettings, check_urls_allowed, plan_addaudio, plan_caption
from tasks.storage import LocalFolderStorage
from worker_image.contract import AddAudioOptions, CaptionJob, CaptionStyle


@pytest.fixture()
def store(tmp_path: Path) -> LocalFolderStorage:
    return LocalFolderStorage(tmp_path / "renders")


def test_caption_settings_are_caption_job_fields_with_the_same_defaults_and_bounds():
    for name, field in CaptionSettings.model_fields.items():
        job_field = CaptionJob.model_fields[name]
        assert (field.annotation, field.default, field.metadata) == (job_field.annotation, job_field.default,
                                                                     job_field.metadata), name


def test_plan_caption_names_the_output_and_copies_style_and_settings(store: LocalFolderStorage):
    planned = plan_caption("https://example.com/v.mp4", "https://example.com/s.srt", "Canal Ação/Vídeo 1/videos",
                           "vídeo legendado.mp4", store, style=CaptionStyle(box=True),
                           settings=CaptionSettings(crf=18, x264_preset="fast", max_download_bytes=1000))
    job = planned.job
    assert planned.key == "Canal Ação/Vídeo 1/videos/vídeo legendado.mp4"
    assert job.id == job.filename == "vídeo legendado.mp4"
    assert job.output.path == str(store.path_for(planned.key))
    assert job.style.box and (job.crf, job.x264_preset, job.max_download_bytes) == (18, "fast", 1000)


def test_plan_addaudio_names_the_output_and_keeps_the_options(store: LocalFolderStorage):
    planned = plan_addaudio("https://example.com/v.mp4", "https://example.com/a.mp3", "", "out.mp4", store,
                            options=AddAudioOptions(mode="mix", duck=True))
    assert planned.key == "out.mp4" and planned.job.filename == "out.mp4"
    assert planned.job.options.mode == "mix" and planned.job.options.duck
    assert plan_addaudio("https://e.com/v", "https://e.com/a", "p/", "o.mp4", store).job.options == AddAudioOptions()


@pytest.mark.parametrize(("path", "name", "field"), [
    ("p/", "../x.mp4", "output_filename"),
    ("p/", "x.mov", "output_filename"),
    ("p/", "a/b.mp4", "output_filename"),
    ("p/", "", "output_filename"),
    ("/abs/", "x.mp4", "path"),
    ("a/../b/", "x.mp4", "path"),
])
def test_bad_names_are_request_errors_naming_the_field(store: LocalFolderStorage, path: str, name: str, field: str):
    with pytest.raises(RequestError) as err:
        plan_caption("https://example.com/v.mp4", "https://example.com/s.srt", path, name, store)
    assert err.value.field == field


def test_local_inputs_are_refused_for_remote_backends_naming_the_field():
    check_urls_allowed({"url_video": "/tmp/v.mp4", "url_srt": "file:///tmp/s.srt"}, local_inputs_ok=True)
    with pytest.raises(RequestError) as err:
        check_urls_allowed({"url_video": "https://e.com/v.mp4", "url_srt": "/tmp/s.srt"}, local_inputs_ok=False)
    assert err.value.field == "url_srt" and "local paths" in err.value.reason
    with pytest.raises(RequestError) as err:
        check_urls_allowed({"url_audio": "s3://bucket/a.mp3"}, local_inputs_ok=True)
    assert err.value.field == "url_audio" and "scheme 's3'" in err.value.reason
