"""Planning: turn a validated request into render jobs with their output keys and destinations."""

from __future__ import annotations

from pydantic import BaseModel, Field

from worker_image.contract import ClipJob, ImageInput, input_kind

from .errors import InvalidKeyError, RequestError
from .keys import clip_filename, make_key
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
