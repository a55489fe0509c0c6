"""The RunPod backend end to end: the img2vid flow -> fake RunPod control plane -> real worker processes
(our handler under the runpod SDK's production loop) -> files on disk, verified by the flow."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from flows.img2vid import img2vid
from tests.integration.conftest import CLIP_S, TINY

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "state_dir")]


def test_sixty_images_over_three_workers(fake_runpod, start_workers, runpod_block, images, renders_dir: Path):
    pool = start_workers(3)
    block = runpod_block(max_concurrent_jobs=3)
    body = {"images": images(60), "path": "Proj/Sixty/videos/temp/"}
    started = time.perf_counter()
    state = img2vid(**body, settings=TINY, backend=block, return_state=True)
    elapsed_s = time.perf_counter() - started
    assert state.is_completed(), state.message
    result = state.result()
    assert result["code"] == 200 and result["message"] == "60 of 60 rendered"
    assert [v["id"] for v in result["videos"]] == [f"img-{n}" for n in range(60)]
    assert [v["filename"] for v in result["videos"]] == [f"video_{n}.mp4" for n in range(1, 61)]
    folder = renders_dir / "Proj" / "Sixty" / "videos" / "temp"
    for video in result["videos"]:
        path = folder / video["filename"]
        assert path.stat().st_size == video["size_bytes"] > 0
        assert video["frames"] == round(CLIP_S * 24) and (video["width"], video["height"]) == (160, 90)
    # 3 jobs of 20 clips, one per worker, each finished exactly once
    jobs = list(fake_runpod.jobs.values())
    assert fake_runpod.counts["run"] == 3 and len(jobs) == 3
    assert sorted(len(j.input["clips"]) for j in jobs) == [20, 20, 20]
    assert all(j.status == "COMPLETED" and j.done_posts == 1 for j in jobs)
    assert {j.worker for j in jobs} == set(pool.procs)
    assert fake_runpod.counts["progress"] > 0  # progress_update reached the platform
    print(f"\n60 clips over 3 workers: {elapsed_s:.1f} s; status polls: {fake_runpod.counts['status']}")


def test_failed_job_on_bad_input_is_not_resubmitted(fake_runpod, start_workers, runpod_block, images, renders_dir,
                                                      monkeypatch):
    """A worker that refuses the job input (here: an orchestrator newer than the worker image sends a field
    the worker's contract does not know) answers FAILED with a structured InputError: final, no retry."""
    import tasks.render_runpod as render_runpod
    from worker_image.contract import Img2VidJob

    class SkewedJob:
        def __init__(self, **fields):
            self.job = Img2VidJob(**fields)

        def model_dump(self, **kwargs):
            return {**self.job.model_dump(**kwargs), "watermark": True}

    monkeypatch.setattr(render_runpod, "Img2VidJob", SkewedJob)
    start_workers(2)
    block = runpod_block(max_concurrent_jobs=2)
    state = img2vid(images=images(4), path="Proj/Failed/", settings=TINY, backend=block, return_state=True)
    assert state.is_failed()
    result = state.result(raise_on_failure=False)
    assert result["code"] == 500 and result["message"] == "0 of 4 rendered; 4 failed"
    for item in result["failed"]:
        assert item["error"]["type"] == "JobFailedError" and item["error"]["retryable"] is False
        assert "InputError" in item["error"]["message"] and "watermark" in item["error"]["message"]
    jobs = list(fake_runpod.jobs.values())
    assert fake_runpod.counts["run"] == 2 and all(j.status == "FAILED" for j in jobs)
    assert all(j.takes == 1 for j in jobs)


def test_timed_out_job_is_split_and_resubmitted(fake_runpod, start_workers, runpod_block, images, slow_origin,
                                                renders_dir):
    """A job that runs past policy.executionTimeout is TIMED_OUT by the platform (and stopped on the worker);
    its clips go out again in two smaller jobs and render."""
    start_workers(2)
    slow = slow_origin(delay_s=6.0, slow_hits=1)
    block = runpod_block(max_concurrent_jobs=2, execution_timeout_s=2.0, frame_cost_s=0.001, clip_overhead_s=0.0)
    batch = images(4)
    batch[0]["image_url"] = slow.url("stalls-once.jpg")
    state = img2vid(images=batch, path="Proj/TimedOut/", settings=TINY, backend=block, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert [v["id"] for v in result["videos"]] == [b["id"] for b in batch]
    statuses = sorted(j.status for j in fake_runpod.jobs.values())
    assert statuses == ["COMPLETED"] * 3 + ["TIMED_OUT"]
    timed_out = next(j for j in fake_runpod.jobs.values() if j.status == "TIMED_OUT")
    assert [c["id"] for c in timed_out.input["clips"]] == ["img-0", "img-1"]
    resubmitted = sorted(len(j.input["clips"]) for j in fake_runpod.jobs.values() if j is not timed_out)
    assert resubmitted == [1, 1, 2]  # the other first-round job, and the timed-out one in halves
    assert fake_runpod.counts["stop_signals"] >= 1


def test_rate_limited_run_is_retried_without_duplicates(fake_runpod, start_workers, runpod_block, images,
                                                         renders_dir):
    """429 answers to POST /run are retried with backoff (honouring Retry-After); each chunk is one job."""
    start_workers(3)
    fake_runpod.run_429 = 4
    block = runpod_block(max_concurrent_jobs=3)
    state = img2vid(images=images(6), path="Proj/RateLimited/", settings=TINY, backend=block, return_state=True)
    assert state.is_completed(), state.message
    assert fake_runpod.counts["run_429"] == 4
    assert fake_runpod.counts["run"] == 4 + 3 and len(fake_runpod.jobs) == 3
    assert all(j.status == "COMPLETED" for j in fake_runpod.jobs.values())


def test_task_retry_resumes_the_submitted_job(fake_runpod, start_workers, runpod_block, images, renders_dir):
    """When polling fails past the client's own retries, Prefect retries the task; the retry finds the job
    id recorded for (flow run, chunk) and resumes polling it: one job on the platform, not two."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    start_workers(1)
    fake_runpod.status_503 = 3
    block = runpod_block(max_concurrent_jobs=1, api_retries=1)
    state = img2vid(images=images(2), path="Proj/Resume/", settings=TINY, backend=block, return_state=True)
    assert state.is_completed(), state.message
    assert fake_runpod.counts["status_503"] == 3
    assert fake_runpod.counts["run"] == 1 and len(fake_runpod.jobs) == 1

    async def task_runs():
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))

    runs = [r for r in asyncio.run(task_runs()) if r.name.startswith("runpod job")]
    assert len(runs) == 1 and runs[0].run_count == 2  # one task run, retried once by Prefect


def test_killed_worker_loses_no_result_and_reports_none_twice(fake_runpod, start_workers, runpod_block, images,
                                                              slow_origin, renders_dir):
    """A worker process killed mid-job (its heartbeat too) stops pinging; the platform puts the job back in the
    queue and another worker completes it. Every clip is reported exactly once; the dead worker's job is
    not resubmitted by the orchestrator."""
    import threading

    pool = start_workers(2)
    slow = slow_origin(delay_s=5.0, slow_hits=1)
    block = runpod_block(max_concurrent_jobs=2)
    batch = images(4)
    batch[0]["image_url"] = slow.url("stalls-once.jpg")
    killed: list[str] = []

    def kill_the_worker_of_img0() -> None:
        def running(f):
            return any(j.status == "IN_PROGRESS" and j.input["clips"][0]["id"] == "img-0" for j in f.jobs.values())

        if fake_runpod.wait_for(running, 60):
            job = next(j for j in fake_runpod.jobs.values() if j.input["clips"][0]["id"] == "img-0")
            killed.append(job.worker)
            pool.kill(job.worker)

    killer = threading.Thread(target=kill_the_worker_of_img0, daemon=True)
    killer.start()
    state = img2vid(images=batch, path="Proj/Killed/", settings=TINY, backend=block, return_state=True)
    killer.join(5)
    assert state.is_completed(), state.message
    result = state.result()
    assert [v["id"] for v in result["videos"]] == [b["id"] for b in batch] and not result["failed"]
    assert killed and not pool.alive(killed[0])
    job = next(j for j in fake_runpod.jobs.values() if j.input["clips"][0]["id"] == "img-0")
    assert job.takes == 2 and job.worker != killed[0] and job.done_posts == 1
    assert fake_runpod.counts["requeued"] == 1
    assert fake_runpod.counts["run"] == 2 and fake_runpod.counts["done"] == 2


def test_production_shape_workers_upload_to_s3_with_presigned_puts(fake_runpod, start_workers, runpod_block, images,
                                                                   s3_endpoint):
    """The configuration RunPod needs: workers that do not share our disk, outputs to S3 by presigned PUT
    (here S3 is moto behind a SigV4-checking gateway); the flow verifies each object by HEAD."""
    from prefect_aws import MinIOCredentials, S3Bucket

    from blocks.s3 import S3OutputStorage
    from tests.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY

    bucket = s3_endpoint.make_bucket(f"runpod-{uuid.uuid4().hex[:10]}")
    creds = MinIOCredentials(minio_root_user=ACCESS_KEY, minio_root_password=SECRET_KEY, region_name=REGION,
                             aws_client_parameters={"endpoint_url": s3_endpoint.endpoint_url})
    S3OutputStorage(bucket=S3Bucket(bucket_name=bucket, credentials=creds)).save(f"s3-{bucket}", overwrite=True)
    start_workers(2)
    block = runpod_block(max_concurrent_jobs=2, workers_share_filesystem=False)

    refused = img2vid(images=images(2), path="Proj/S3/", settings=TINY, backend=block, return_state=True)
    assert refused.is_failed() and "storage" in refused.message and not fake_runpod.jobs  # local folder: refused

    state = img2vid(images=images(4), path="Proj/S3/", settings=TINY, storage=f"s3-{bucket}", backend=block,
                    return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert [v["key"] for v in result["videos"]] == [f"Proj/S3/video_{n}.mp4" for n in range(1, 5)]
    for job in fake_runpod.jobs.values():
        for clip in job.input["clips"]:
            assert clip["output"]["kind"] == "put_url" and SECRET_KEY not in json.dumps(clip)
    puts = [r for r in s3_endpoint.requests if r[0] == "PUT" and r[1].startswith(f"/{bucket}/")]
    assert len(puts) == 4 and all(status == 200 for *_, status in puts)


def test_caption_and_addaudio_jobs_run_on_the_workers(fake_runpod, start_workers, runpod_block, origin, media_dir,
                                                      renders_dir):
    """The handler serves caption and addaudio too: each flow run is one RunPod job with its own contract."""
    from flows.addaudio import addaudio
    from flows.caption import caption

    start_workers(1)
    block = runpod_block(max_concurrent_jobs=1)
    video = origin.add("/bikes.mp4", (media_dir / "videos" / "bikes_640x272_noaudio.mp4").read_bytes(),
                       content_type="video/mp4")
    srt = origin.add("/legendas.srt", (media_dir / "subtitles" / "legendas_ptbr.srt").read_bytes(),
                     content_type="text/plain")
    audio = origin.add("/narration.mp3", (media_dir / "audio" / "narration_ptbr.mp3").read_bytes(),
                       content_type="audio/mpeg")
    captioned = caption(url_video=video, url_srt=srt, path="Proj/Caption/", output_filename="legendado.mp4",
                        settings={"x264_preset": "veryfast"}, backend=block, return_state=True)
    assert captioned.is_completed(), captioned.message
    narrated = addaudio(url_video=video, url_audio=audio, path="Proj/Audio/", output_filename="com_audio.mp4",
                        backend=block, return_state=True)
    assert narrated.is_completed(), narrated.message
    assert (renders_dir / "Proj" / "Caption" / "legendado.mp4").stat().st_size > 0
    assert (renders_dir / "Proj" / "Audio" / "com_audio.mp4").stat().st_size > 0
    operations = sorted(j.input["operation"] for j in fake_runpod.jobs.values())
    assert operations == ["addaudio", "caption"] and all(j.status == "COMPLETED" for j in fake_runpod.jobs.values())
