"""The S3OutputStorage block and ``python -m blocks.s3``: fields, client settings, set-up from the environment."""

from __future__ import annotations

import uuid

import pytest
from prefect_aws import AwsCredentials, MinIOCredentials, S3Bucket
from pydantic import SecretStr, ValidationError

from blocks.s3 import (
    DEFAULT_PRESIGNED_GET_EXPIRY_S,
    S3OutputStorage,
    main,
    s3_client,
    storage_from_env,
)
from tasks.errors import StorageError
from tasks.storage import resolve_storage
from tasks.storage_s3 import S3Storage
from tests.s3_endpoint import ACCESS_KEY, REGION, SECRET_KEY, S3Endpoint


def _env(endpoint: S3Endpoint | None, bucket: str | None = None, **over: str) -> dict[str, str]:
    env = {"S3_ACCESS_KEY": ACCESS_KEY, "S3_SECRET_KEY": SECRET_KEY}
    if endpoint is not None:
        env["S3_ENDPOINT_URL"] = endpoint.endpoint_url
    if bucket:
        env["S3_BUCKET_NAME"] = bucket
    env.update(over)
    return env


def test_every_field_has_title_and_description() -> None:
    for name, info in S3OutputStorage.model_fields.items():
        assert info.title and info.description, name


def test_env_defaults_are_the_seeds() -> None:
    storage = storage_from_env(_env(None, S3_ENDPOINT_URL="http://minio:9000"))
    assert storage.bucket.bucket_name == "canais"
    assert isinstance(storage.bucket.credentials, MinIOCredentials)
    assert storage.bucket.credentials.region_name == "us-east-1"
    assert isinstance(storage.bucket.credentials.minio_root_password, SecretStr)
    assert storage.bucket.credentials.aws_client_parameters.endpoint_url == "http://minio:9000"
    assert storage.public_base_url is None
    assert storage.presigned_get_expiry_s == DEFAULT_PRESIGNED_GET_EXPIRY_S == 86400
    assert storage.presigned_put_min_expiry_s == 14400
    assert SECRET_KEY not in repr(storage) and SECRET_KEY not in storage.model_dump_json()


def test_env_without_endpoint_makes_aws_credentials() -> None:
    storage = storage_from_env(_env(None, S3_BUCKET_NAME="b", S3_REGION="eu-west-1"))
    creds = storage.bucket.credentials
    assert isinstance(creds, AwsCredentials) and creds.region_name == "eu-west-1"
    assert storage.bucket.bucket_name == "b"


def test_env_missing_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="S3_SECRET_KEY"):
        storage_from_env({"S3_ACCESS_KEY": "a"})


@pytest.mark.parametrize("bad", ["cdn.example.com", "ftp://x/y", "https://cdn/x?sig=1", "https:///nohost"])
def test_public_base_url_must_be_http_without_query(bad: str) -> None:
    with pytest.raises(ValidationError):
        storage_from_env(_env(None, S3_ENDPOINT_URL="http://m:9000"), public_base_url=bad)


def test_presigned_get_expiry_bounded_by_sigv4_limit() -> None:
    with pytest.raises(ValidationError):
        storage_from_env(_env(None, S3_ENDPOINT_URL="http://m:9000"), presigned_get_expiry_s=604801)


def test_unknown_fields_are_refused() -> None:
    storage = storage_from_env(_env(None, S3_ENDPOINT_URL="http://m:9000"))
    with pytest.raises(ValidationError):
        S3OutputStorage(bucket=storage.bucket, presigned_get_expiry=60)


def test_client_forces_path_style_and_sigv4_over_block_config() -> None:
    creds = MinIOCredentials(minio_root_user="u", minio_root_password="p", region_name="sa-east-1",
                             aws_client_parameters={"endpoint_url": "http://m:9000",
                                                    "config": {"s3": {"addressing_style": "virtual"},
                                                               "signature_version": "s3", "read_timeout": 7}})
    client = s3_client(S3Bucket(bucket_name="b", credentials=creds))
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.signature_version == "s3v4"
    assert client.meta.region_name == "sa-east-1"
    assert client.meta.endpoint_url == "http://m:9000"
    url = client.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
    assert url.startswith("http://m:9000/b/k?") and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url


# -- with a Prefect API and the S3 endpoint


def test_setup_command_saves_blocks_that_flows_load(prefect_harness: None, s3_endpoint: S3Endpoint,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bucket = s3_endpoint.make_bucket(f"setup-{uuid.uuid4().hex[:8]}")
    for name, value in _env(s3_endpoint, bucket).items():
        monkeypatch.setenv(name, value)
    assert main(["register"]) == 0
    assert main(["setup", "--name", "renders-s3", "--public-base-url", "https://cdn.example.com/x/",
                 "--presigned-get-expiry-s", "600", "--presigned-put-min-expiry-s", "7200"]) == 0
    out = capsys.readouterr().out
    assert "'renders-s3-credentials'" in out and "'renders-s3-bucket'" in out and SECRET_KEY not in out

    loaded = S3OutputStorage.load("renders-s3")
    assert loaded.bucket.bucket_name == bucket
    assert loaded.bucket.credentials.minio_root_password.get_secret_value() == SECRET_KEY
    assert loaded.public_base_url == "https://cdn.example.com/x"
    assert (loaded.presigned_get_expiry_s, loaded.presigned_put_min_expiry_s) == (600, 7200)
    assert S3Bucket.load("renders-s3-bucket").bucket_name == bucket
    store = resolve_storage("renders-s3")
    assert isinstance(store, S3Storage) and store.name == "renders-s3"
    assert store.url_for("a b.mp4") == ("https://cdn.example.com/x/a%20b.mp4", "public")

    # a bare prefect-aws S3Bucket block name works too, with presigned result URLs
    bare = S3Storage.load("renders-s3-bucket")
    assert bare.url_for("a.mp4")[1] == "presigned"


def test_setup_refuses_wrong_credentials_and_saves_nothing(prefect_harness: None, s3_endpoint: S3Endpoint,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bucket = s3_endpoint.make_bucket(f"setup-{uuid.uuid4().hex[:8]}")
    for name, value in _env(s3_endpoint, bucket, S3_SECRET_KEY="wrong-secret").items():
        monkeypatch.setenv(name, value)
    assert main(["setup", "--name", "bad-s3"]) == 1
    err = capsys.readouterr().err
    assert f"bucket {bucket!r}" in err and "access denied" in err and "wrong-secret" not in err
    assert "Traceback" not in err
    with pytest.raises(StorageError, match="no S3 Output Storage or S3 Bucket block"):
        S3Storage.load("bad-s3")


def test_setup_can_create_the_bucket(prefect_harness: None, s3_endpoint: S3Endpoint,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"created-{uuid.uuid4().hex[:8]}"
    for name, value in _env(s3_endpoint, bucket).items():
        monkeypatch.setenv(name, value)
    assert main(["setup", "--name", "made-s3"]) == 1  # missing bucket
    assert main(["setup", "--name", "made-s3", "--create-bucket"]) == 0
    s3_endpoint.client().head_bucket(Bucket=bucket)
    assert S3Storage.load("made-s3").bucket_name == bucket
