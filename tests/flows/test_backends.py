"""Backend dispatch: which local task renders which job, and which backends a flow accepts."""

from __future__ import annotations

import pytest

from tasks.backends import DEFAULT_OPERATIONS, require_operation
from tasks.errors import BackendError, RequestError
from tasks.render_local import LOCAL_TASKS, LocalBackend, render_addaudio_local, render_caption_local, render_clip_local
from worker_image.contract import AddAudioJob, CaptionJob, ClipJob

OUT = {"kind": "file", "path": "/tmp/never-written.mp4"}
CLIP = ClipJob(id="a", image_url="https://example.com/a.jpg", duration_s=1, filename="video_1.mp4", output=OUT)
CAPTION = CaptionJob(id="c.mp4", url_video="https://example.com/v.mp4", url_srt="https://example.com/s.srt",
                     filename="c.mp4", output=OUT)
ADDAUDIO = AddAudioJob(url_video="https://example.com/v.mp4", url_audio="https://example.com/a.mp3",
                       filename="a.mp4", output=OUT)


def test_each_job_model_has_its_local_task():
    assert LOCAL_TASKS == {ClipJob: (render_clip_local, True), CaptionJob: (render_caption_local, False),
                           AddAudioJob: (render_addaudio_local, False)}
    for task_fn in (render_clip_local, render_caption_local, render_addaudio_local):
        assert task_fn.retries == 3 and task_fn.retry_delay_seconds == [2, 5, 15]
        assert task_fn.retry_condition_fn.__name__ == "is_transient"


@pytest.mark.parametrize(("jobs", "settings", "reason"), [
    ([CLIP, CAPTION], None, "cannot render jobs of type"),
    (["not a job"], None, "cannot render jobs of type ['str']"),
    ([CLIP], None, "need RenderSettings"),
])
def test_local_backend_refuses_jobs_it_cannot_dispatch(jobs, settings, reason):
    with pytest.raises(BackendError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        LocalBackend()(jobs, settings, lambda i, outcome: None)


def test_local_backend_renders_every_operation():
    for operation in ("img2vid", "caption", "addaudio"):
        require_operation(LocalBackend(), operation)


def test_a_backend_that_does_not_say_renders_img2vid_only():
    class OldBackend:
        name = "gpu-endpoint"
        local_inputs_ok = False

        def __call__(self, jobs, settings, on_done):  # pragma: no cover - never called
            raise AssertionError

    require_operation(OldBackend(), "img2vid")
    assert DEFAULT_OPERATIONS == {"img2vid"}
    with pytest.raises(RequestError) as err:
        require_operation(OldBackend(), "caption")
    assert err.value.field == "backend" and "'gpu-endpoint' does not render caption jobs" in str(err.value)
