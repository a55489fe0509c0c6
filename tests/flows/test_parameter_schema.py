"""The deployments' parameter schemas (what Prefect's server enforces and its UI renders as a form)."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from flows.addaudio import addaudio
from flows.batch import batch
from flows.caption import caption
from flows.img2vid import img2vid


def _schema(flow) -> dict:
    return parameter_schema(flow).model_dump()


def test_each_flow_schema_carries_its_models_fields():
    img = _schema(img2vid)
    assert set(img["properties"]) == {"images", "path", "settings", "storage", "backend"}
    assert {"id", "image_url", "duration_s", "duracao"} <= set(img["definitions"]["ImageInput"]["properties"])
    assert {"fps", "width_px", "height_px", "zoom_end", "encoder"} <= set(img["definitions"]["RenderSettings"]["properties"])
    cap = _schema(caption)
    assert {"url_video", "url_srt", "path", "output_filename", "style", "settings"} <= set(cap["properties"])
    assert {"CaptionStyle", "CaptionSettings"} <= set(cap["definitions"])
    aud = _schema(addaudio)
    assert {"url_video", "url_audio", "options"} <= set(aud["properties"]) and "AddAudioOptions" in aud["definitions"]
    bat = _schema(batch)
    assert bat["required"] == ["manifest"]
    assert bat["properties"]["max_concurrency"]["minimum"] == 1 and bat["properties"]["max_concurrency"]["maximum"] == 16


@pytest.mark.parametrize("image, error", [
    ({"id": "a", "image_url": "a.jpg", "duracao": 1.5}, None),          # the seed's name
    ({"id": "a", "image_url": "a.jpg", "duration_s": 1.5}, None),       # ours
    ({"id": "a", "image_url": "a.jpg"}, "images[0]"),                   # neither
    ({"id": "a", "image_url": "a.jpg", "duracao": 0}, "images[0].duracao"),
    ({"id": "a", "image_url": "a.jpg", "duracao": 1, "zoom": 2}, "'zoom' was unexpected"),
])
def test_img2vid_schema_accepts_the_seed_alias_like_the_model_does(image, error):
    body = {"images": [image], "path": "p/"}
    if error is None:
        validate(body, _schema(img2vid), raise_on_error=True, preprocess=True)
        img2vid.validate_parameters(body)
    else:
        with pytest.raises(ValidationError) as info:
            validate(body, _schema(img2vid), raise_on_error=True, preprocess=True)
        assert error in str(info.value)
