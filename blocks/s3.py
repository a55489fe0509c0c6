"""S3/MinIO output storage as Prefect blocks, and the command that creates them from the environment.

The storage a flow's ``storage`` parameter names is an :class:`S3OutputStorage` block. It wraps a
prefect-aws ``S3Bucket`` block (itself holding ``MinIOCredentials`` or ``AwsCredentials``, whose
``aws_client_parameters.endpoint_url`` reaches MinIO or any S3-compatible server) and adds the two
settings prefect-aws has no place for: the public base URL handed back to callers and the lifetime of
presigned GET URLs. Why a wrapper and not the bare ``S3Bucket``: those settings belong to the same
named storage (one name in a flow run's parameters says everything about where outputs go and how they
are linked), and keeping the ``S3Bucket`` untouched means the same bucket block still works with every
prefect-aws task and with ``S3Bucket.load`` elsewhere. A bare ``S3Bucket`` name also works as a
storage (``tasks.storage_s3.S3Storage.load`` falls back to it), with presigned GET URLs of the default
lifetime.

Every boto3 client is built by :func:`s3_client`, the one place the secret is unwrapped (inside
prefect-aws's ``get_boto3_session``). It always uses path-style addressing (``endpoint/bucket/key``,
which MinIO and other S3 servers without wildcard DNS need) and SigV4, whatever the credentials block
says.

Set-up, from the environment variables of the seed API::

    export S3_ENDPOINT_URL=https://minio.example.com S3_ACCESS_KEY=... S3_SECRET_KEY=...
    export S3_BUCKET_NAME=canais S3_REGION=us-east-1          # these two are the defaults
    python -m blocks.s3 setup --name renders-s3 [--public-base-url https://cdn.example.com]
    python -m flows.img2vid request.json                      # with "storage": "renders-s3"

``setup`` checks the bucket first (HEAD bucket) and saves nothing when that fails; it saves three
blocks, ``<name>-credentials``, ``<name>-bucket`` and ``<name>`` (overwriting ones of the same names).
``register`` only registers the block types with the Prefect API (for the UI's block catalogue).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config
from prefect.blocks.core import Block
from prefect_aws import AwsCredentials, MinIOCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import ConfigDict, Field, SecretStr, field_validator

#: Longest lifetime of a SigV4 presigned URL, seconds (7 days; AWS S3 API reference,
#: "Authenticating Requests: Using Query Parameters", X-Amz-Expires). MinIO has the same limit.
MAX_PRESIGNED_EXPIRY_S = 7 * 24 * 3600
#: Default lifetime of the presigned GET URLs handed back when no public base URL is set, seconds (1 day):
#: long enough for a content pipeline to fetch the clips, short enough that a leaked link dies soon.
DEFAULT_PRESIGNED_GET_EXPIRY_S = 24 * 3600
#: Default floor on the lifetime of presigned PUT URLs, seconds (4 h). An upload URL must outlive the
#: render job it is given to: RunPod's defaults here allow a job 1 h of TTL plus 480 s of execution
#: (``blocks.runpod``), and the local backend's longest encode (300 s at 24 fps) is allowed ~1 h
#: (``worker_image.engine``); 4 h covers both with room for queueing.
DEFAULT_PRESIGNED_PUT_MIN_EXPIRY_S = 4 * 3600
#: Seed environment variables read by ``setup``, and the defaults of the last two (the seed's).
ENV_ENDPOINT_URL, ENV_ACCESS_KEY, ENV_SECRET_KEY = "S3_ENDPOINT_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY"
ENV_BUCKET_NAME, ENV_REGION = "S3_BUCKET_NAME", "S3_REGION"
DEFAULT_BUCKET_NAME, DEFAULT_REGION = "canais", "us-east-1"

#: botocore settings forced on every client: path-style addressing and SigV4 (MinIO and S3-compatible
#: servers), checksums only where an operation requires them (botocore >= 1.36 otherwise adds CRC32
#: headers that several S3-compatible servers refuse), standard retries (3 attempts) and bounded
#: timeouts, seconds.
FORCED_CONFIG = Config(
    s3={"addressing_style": "path"},
    signature_version="s3v4",
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=10,
    read_timeout=60,
)


class S3OutputStorage(Block):
    """Where rendered outputs go in S3/MinIO, and how callers get links to them.

    Outputs are written by the render job with a presigned PUT URL (the worker never sees credentials),
    verified with a HEAD request, and linked either as ``public_base_url + key`` (``url_kind``
    ``"public"``) or as a presigned GET URL valid ``presigned_get_expiry_s`` (``url_kind``
    ``"presigned"``).

    Example:
        Create one by hand (``python -m blocks.s3 setup`` does this from the environment)::

            creds = MinIOCredentials(minio_root_user="...", minio_root_password="...", region_name="us-east-1",
                                     aws_client_parameters={"endpoint_url": "http://127.0.0.1:9000"})
            bucket = S3Bucket(bucket_name="canais", credentials=creds)
            S3OutputStorage(bucket=bucket, public_base_url="https://cdn.example.com").save("renders-s3")
    """

    model_config = ConfigDict(extra="forbid")

    _block_type_name = "S3 Output Storage"
    _block_type_slug = "s3-output-storage"
    _description = "api-gpu output storage: a prefect-aws S3 bucket plus how result URLs are made."

    bucket: S3Bucket = Field(
        ...,
        title="S3 bucket",
        description="prefect-aws S3Bucket block (bucket name, MinIO or AWS credentials, endpoint URL). Its "
        "bucket_folder, when set, prefixes every object key.",
    )
    public_base_url: str | None = Field(
        None,
        title="Public base URL",
        description="http(s) URL that serves the bucket's objects publicly (a CDN or custom domain); result "
        "URLs are this plus the URL-encoded object key. Unset: presigned GET URLs.",
    )
    presigned_get_expiry_s: int = Field(
        DEFAULT_PRESIGNED_GET_EXPIRY_S,
        ge=1,
        le=MAX_PRESIGNED_EXPIRY_S,
        title="Presigned GET lifetime (s)",
        description="Lifetime of the presigned GET URLs handed back when public_base_url is unset, seconds "
        "(1 .. 604800, SigV4's 7-day limit; default 86400).",
    )

    presigned_put_min_expiry_s: int = Field(
        DEFAULT_PRESIGNED_PUT_MIN_EXPIRY_S,
        ge=1,
        le=MAX_PRESIGNED_EXPIRY_S,
        title="Presigned PUT minimum lifetime (s)",
        description="Upload URLs live at least this long, seconds, even when a flow asks for less, so they outlive "
        "the render job (default 14400: RunPod's default TTL plus execution timeout, with room). Raise it with "
        "longer job TTLs; at most 604800.",
    )

    @field_validator("public_base_url")
    @classmethod
    def _public_base(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"public_base_url must be an http(s) URL with a host, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("public_base_url must not have a query string or fragment")
        return value.strip().rstrip("/")


def s3_client(bucket: S3Bucket) -> Any:
    """A boto3 S3 client for ``bucket``'s credentials, forced to path-style addressing and SigV4.

    The only place a secret is unwrapped (by prefect-aws's ``get_boto3_session``). The credentials'
    ``aws_client_parameters`` (endpoint URL, TLS verification, extra botocore config) are kept; the
    settings of :data:`FORCED_CONFIG` override theirs.

    Args:
        bucket: The prefect-aws S3Bucket block.

    Returns:
        A ``botocore.client.S3`` client; the region is the credentials' ``region_name`` or us-east-1.
    """
    creds = bucket.credentials
    params = creds.aws_client_parameters.get_params_override()
    user_config = params.pop("config", None)
    config = user_config.merge(FORCED_CONFIG) if user_config is not None else FORCED_CONFIG
    session = creds.get_boto3_session()
    return session.client("s3", region_name=creds.region_name or DEFAULT_REGION, config=config, **params)


def endpoint_of(bucket: S3Bucket) -> str:
    """The S3 endpoint a bucket block talks to, for messages: its endpoint_url or ``"AWS S3"``."""
    return bucket.credentials.aws_client_parameters.endpoint_url or "AWS S3"


def storage_from_env(
    env: dict[str, str] | None = None,
    *,
    credentials_kind: str = "auto",
    public_base_url: str | None = None,
    presigned_get_expiry_s: int = DEFAULT_PRESIGNED_GET_EXPIRY_S,
    presigned_put_min_expiry_s: int = DEFAULT_PRESIGNED_PUT_MIN_EXPIRY_S,
    bucket_folder: str = "",
) -> S3OutputStorage:
    """Build (not save) an S3OutputStorage from the seed's environment variables.

    Reads ``S3_ENDPOINT_URL`` (optional for AWS S3), ``S3_ACCESS_KEY``, ``S3_SECRET_KEY`` (required),
    ``S3_BUCKET_NAME`` (default ``canais``) and ``S3_REGION`` (default ``us-east-1``).

    Args:
        env: The environment to read (``os.environ`` when None).
        credentials_kind: ``"minio"`` (MinIOCredentials), ``"aws"`` (AwsCredentials), or ``"auto"``:
            MinIO when ``S3_ENDPOINT_URL`` is set, else AWS.
        public_base_url: See :attr:`S3OutputStorage.public_base_url`.
        presigned_get_expiry_s: See :attr:`S3OutputStorage.presigned_get_expiry_s`.
        presigned_put_min_expiry_s: See :attr:`S3OutputStorage.presigned_put_min_expiry_s`.
        bucket_folder: Key prefix inside the bucket (the S3Bucket block's ``bucket_folder``).

    Raises:
        ValueError: a required variable is missing or empty, or ``credentials_kind`` is unknown.
    """
    env = dict(os.environ if env is None else env)
    missing = [name for name in (ENV_ACCESS_KEY, ENV_SECRET_KEY) if not env.get(name)]
    if missing:
        raise ValueError(f"missing environment variable(s): {', '.join(missing)}")
    endpoint = env.get(ENV_ENDPOINT_URL) or None
    region = env.get(ENV_REGION) or DEFAULT_REGION
    kind = ("minio" if endpoint else "aws") if credentials_kind == "auto" else credentials_kind
    client_params = AwsClientParameters(endpoint_url=endpoint, config=dict(
        s3={"addressing_style": "path"}, signature_version="s3v4"))
    secret = SecretStr(env[ENV_SECRET_KEY])
    if kind == "minio":
        if not endpoint:
            raise ValueError(f"MinIO credentials need {ENV_ENDPOINT_URL}")
        creds: MinIOCredentials | AwsCredentials = MinIOCredentials(
            minio_root_user=env[ENV_ACCESS_KEY], minio_root_password=secret, region_name=region,
            aws_client_parameters=client_params)
    elif kind == "aws":
        creds = AwsCredentials(aws_access_key_id=env[ENV_ACCESS_KEY], aws_secret_access_key=secret,
                               region_name=region, aws_client_parameters=client_params)
    else:
        raise ValueError(f"credentials kind must be auto, minio or aws, got {credentials_kind!r}")
    bucket = S3Bucket(bucket_name=env.get(ENV_BUCKET_NAME) or DEFAULT_BUCKET_NAME, credentials=creds,
                      bucket_folder=bucket_folder)
    return S3OutputStorage(bucket=bucket, public_base_url=public_base_url,
                           presigned_get_expiry_s=presigned_get_expiry_s,
                           presigned_put_min_expiry_s=presigned_put_min_expiry_s)


def save_storage(storage: S3OutputStorage, name: str) -> dict[str, str]:
    """Save ``storage`` as three named blocks: ``<name>-credentials``, ``<name>-bucket`` and ``<name>``.

    Overwrites blocks of the same names, so running set-up again with new values updates them.

    Returns:
        ``{"credentials": ..., "bucket": ..., "storage": ...}``: the saved block names.
    """
    names = {"credentials": f"{name}-credentials", "bucket": f"{name}-bucket", "storage": name}
    storage.bucket.credentials.save(names["credentials"], overwrite=True)
    storage.bucket.save(names["bucket"], overwrite=True)
    storage.save(names["storage"], overwrite=True)
    return names


def register_block_types() -> list[str]:
    """Register S3OutputStorage (and the prefect-aws blocks it nests) with the Prefect API.

    Returns:
        The registered block type slugs.
    """
    for block_cls in (MinIOCredentials, AwsCredentials, S3Bucket, S3OutputStorage):
        block_cls.register_type_and_schema()
    return [cls.get_block_type_slug() for cls in (MinIOCredentials, AwsCredentials, S3Bucket, S3OutputStorage)]


def main(argv: list[str] | None = None) -> int:
    """``python -m blocks.s3 {register,setup}``; see the module docstring. Exit 0 on success, 1 on a
    storage or configuration error (message on stderr, no traceback), 2 on bad usage."""
    parser = argparse.ArgumentParser(prog="python -m blocks.s3", description="S3/MinIO storage blocks for api-gpu.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("register", help="register the block types with the Prefect API")
    setup = sub.add_parser("setup", help="create the storage blocks from S3_* environment variables")
    setup.add_argument("--name", required=True, help="storage block name, used as the flows' storage parameter")
    setup.add_argument("--public-base-url", default=None, help="CDN or custom domain serving the bucket")
    setup.add_argument("--presigned-get-expiry-s", type=int, default=DEFAULT_PRESIGNED_GET_EXPIRY_S,
                       help=f"lifetime of presigned result URLs, seconds (default {DEFAULT_PRESIGNED_GET_EXPIRY_S})")
    setup.add_argument("--presigned-put-min-expiry-s", type=int, default=DEFAULT_PRESIGNED_PUT_MIN_EXPIRY_S,
                       help="upload URLs live at least this long, seconds (default "
                       f"{DEFAULT_PRESIGNED_PUT_MIN_EXPIRY_S}); raise it for job TTLs over ~4 h")
    setup.add_argument("--credentials", choices=("auto", "minio", "aws"), default="auto",
                       help="credentials block type (auto: minio when S3_ENDPOINT_URL is set)")
    setup.add_argument("--bucket-folder", default="", help="key prefix inside the bucket")
    setup.add_argument("--create-bucket", action="store_true", help="create the bucket when it does not exist")
    setup.add_argument("--no-check", action="store_true", help="save without checking the bucket is reachable")
    args = parser.parse_args(argv)

    from tasks.errors import StorageError
    from tasks.storage_s3 import S3Storage

    if args.command == "register":
        print("registered block types: " + ", ".join(register_block_types()))
        return 0
    try:
        storage = storage_from_env(credentials_kind=args.credentials, public_base_url=args.public_base_url,
                                   presigned_get_expiry_s=args.presigned_get_expiry_s,
                                   presigned_put_min_expiry_s=args.presigned_put_min_expiry_s,
                                   bucket_folder=args.bucket_folder)
        if args.create_bucket:
            S3Storage(storage, name=args.name, check=False).create_bucket()
        if not args.no_check:
            S3Storage(storage, name=args.name, check=True)
        names = save_storage(storage, args.name)
    except (ValueError, StorageError) as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    print(f"saved blocks {names['credentials']!r}, {names['bucket']!r} and {names['storage']!r} "
          f"(bucket {storage.bucket.bucket_name!r} at {endpoint_of(storage.bucket)}); "
          f"use storage={names['storage']!r} in flow parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
