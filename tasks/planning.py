"""Planning: turn a validated request into render jobs with their output keys and destinations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from worker_image.contract import (
    DEFAULT_MAX_VIDEO_BYTES,
    AddAudioJob,
    AddAudioOptions,
    CaptionJob,
    CaptionStyle,
    ClipJob,
    EncoderSettings,
    ImageInput,
    input_kind,
)

from .errors import InvalidKeyError, RequestError
from .keys import clip_filename, make_key, validate_filename
from .storage import Storage

#: Presigned PUT lifetime for a job's outputs, seconds: must cover queueing plus the render. The
#: RunPod backend raises it to at least its execution timeout.
DEFAULT_UPLOAD_EXPIRY_S = 3600


class PlannedClip(BaseModel):
    """A clip to render and where its output goes."""

    index: int = Field(..., description="1-based position in the request.")
    key: str = Field(..., description="Storage key of the output.")
    job: ClipJob


def check_inputs_allowed(images: list[ImageInput], *, local_inputs_ok: bool) -> None:
    """Refuse local-path inputs when the backend cannot read this machine's files.

    Raises:
        RequestError: naming the image id and ``image_url``.
    """
    if local_inputs_ok:
        return
    for image in images:
        if input_kind(image.image_url) == "local":
            raise RequestError(f"images[{image.id!r}].image_url",
                               "local paths are only accepted with the local backend; use an http(s) URL")


def plan_img2vid(images: list[ImageInput], path: str, storage: Storage,
                 *, upload_expiry_s: int = DEFAULT_UPLOAD_EXPIRY_S) -> list[PlannedClip]:
    """One ClipJob per image, in request order, named ``video_1.mp4 ... video_N.mp4`` under ``path``.

    Raises:
        RequestError: ``path`` breaks the key rules (see ``tasks.keys``) or ids repeat.
    """
    seen: set[str] = set()
    for image in images:
        if image.id in seen:
            raise RequestError("images", f"image id {image.id!r} appears more than once; ids must be unique")
        seen.add(image.id)
    planned = []
    for index, image in enumerate(images, start=1):
        filename = clip_filename(index)
        try:
            key = make_key(path, filename)
        except InvalidKeyError as exc:
            raise RequestError("path", str(exc)) from None
        job = ClipJob(id=image.id, image_url=image.image_url, duration_s=image.duration_s, filename=filename,
                      output=storage.target_for(key, expires_s=upload_expiry_s))
        planned.append(PlannedClip(index=index, key=key, job=job))
    return planned


# --- caption and addaudio: one input video, one output file ---------------------------------------

class CaptionSettings(EncoderSettings):
    """The caption flow's ``settings``: H.264 encoder and quality (:class:`EncoderSettings`, seed defaults)
    and the video download limit. Its fields are ``CaptionJob`` fields of the same names, bounds and
    defaults; the plan copies them into the job."""

    max_download_bytes: int = Field(
        DEFAULT_MAX_VIDEO_BYTES, ge=1, le=8 * 1024**3, description="A video larger than this many bytes is refused."
    )


class PlannedJob(BaseModel):
    """A single-output job (caption or addaudio) and the storage key its output goes to."""

    key: str = Field(..., description="Storage key of the output: ``<path>/<output_filename>``.")
    job: CaptionJob | AddAudioJob = Field(..., description="The engine job, its output target filled in.")


def check_urls_allowed(urls: dict[str, str], *, local_inputs_ok: bool) -> None:
    """Refuse local-path inputs when the backend cannot read this machine's files.

    Args:
        urls: Request field name -> input reference, e.g. ``{"url_video": ..., "url_srt": ...}``.
        local_inputs_ok: Whether the backend and storage accept local paths.

    Raises:
        RequestError: naming the field, for a local path with a remote backend or an unsupported scheme.
    """
    for field, url in urls.items():
        try:
            kind = input_kind(url)
        except ValueError as exc:
            raise RequestError(field, str(exc)) from None
        if kind == "local" and not local_inputs_ok:
            raise RequestError(field, "local paths are only accepted with the local backend; use an http(s) URL")


def _output_key(path: str, output_filename: str) -> str:
    try:
        filename = validate_filename(output_filename)
    except InvalidKeyError as exc:
        raise RequestError("output_filename", str(exc)) from None
    try:
        return make_key(path, filename)
    except InvalidKeyError as exc:
        raise RequestError("path", str(exc)) from None


def _build_job(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise RequestError(field, "; ".join(e["msg"] for e in exc.errors())) from None


def plan_caption(url_video: str, url_srt: str, path: str, output_filename: str, storage: Storage, *,
                 style: CaptionStyle | None = None, settings: CaptionSettings | None = None,
                 upload_expiry_s: int = DEFAULT_UPLOAD_EXPIRY_S) -> PlannedJob:
    """The CaptionJob of a seed caption request, delivering to ``<path>/<output_filename>``.

    The job's ``id`` (which engine errors name) is the output file name.

    Args:
        url_video, url_srt: The seed's input references (http(s), or local paths with the local backend).
        path: The seed's output prefix. output_filename: a plain name ending ``.mp4``.
        storage: Where the output goes (gives the job's output target).
        style: Caption look; the engine's defaults when None.
        settings: Encoder settings and download limit; the seed's defaults when None.
        upload_expiry_s: Lifetime of a presigned PUT target, seconds.

    Raises:
        RequestError: ``output_filename`` or ``path`` breaks the key rules (``tasks.keys``), or a field is
            out of bounds (naming it).
    """
    key = _output_key(path, output_filename)
    filename = key.rsplit("/", 1)[-1]
    job = _build_job(CaptionJob, {
        "id": filename, "url_video": url_video, "url_srt": url_srt, "filename": filename,
        "output": storage.target_for(key, expires_s=upload_expiry_s), "style": style or CaptionStyle(),
        **(settings.model_dump() if settings is not None else {}),
    })
    return PlannedJob(key=key, job=job)


def plan_addaudio(url_video: str, url_audio: str, path: str, output_filename: str, storage: Storage, *,
                  options: AddAudioOptions | None = None,
                  upload_expiry_s: int = DEFAULT_UPLOAD_EXPIRY_S) -> PlannedJob:
    """The AddAudioJob of a seed addaudio request, delivering to ``<path>/<output_filename>``.

    Args:
        url_video, url_audio: The seed's input references (http(s), or local paths with the local backend).
        path: The seed's output prefix. output_filename: a plain name ending ``.mp4``.
        storage: Where the output goes (gives the job's output target).
        options: Mode, length policy, gains, fades, encoder; the seed's behaviour when None.
        upload_expiry_s: Lifetime of a presigned PUT target, seconds.

    Raises:
        RequestError: ``output_filename`` or ``path`` breaks the key rules (``tasks.keys``), or a field is
            out of bounds (naming it).
    """
    key = _output_key(path, output_filename)
    filename = key.rsplit("/", 1)[-1]
    job = _build_job(AddAudioJob, {
        "url_video": url_video, "url_audio": url_audio, "filename": filename,
        "output": storage.target_for(key, expires_s=upload_expiry_s), "options": options or AddAudioOptions(),
    })
    return PlannedJob(key=key, job=job)
