"""S3/MinIO storage for the flows: presigned PUT targets, HEAD verification, public or presigned URLs.

The render job receives only a presigned PUT URL (``PutUrlOutput``) and uploads the whole file in one
request (``worker_image.media_io.deliver_put``); it never holds S3 credentials. A single PUT is stored
atomically: an interrupted or refused upload leaves nothing at the key, or the previous object.

Checksum: the worker sends ``x-amz-checksum-sha256`` (base64 SHA-256 of the body) with its PUT. S3 and
MinIO check the body against it (a mismatch is refused with HTTP 400, nothing stored) and keep it
with the object; :meth:`S3Storage.verify` reads it back with ``HEAD ChecksumMode=ENABLED`` and compares
it, and the size, with what the worker reported. A presigned URL cannot sign that header in advance
(the SHA-256 is only known after the render), so it travels unsigned. MinIO's presigned-signature check
looks only at the signed headers, so it accepts that (read in MinIO's source, not run here). AWS S3
refuses unsigned ``x-amz-*`` headers on presigned requests (403 ``HeadersNotSigned``, as reported in
aws-sdk-js issue 4197; not run here), and ``deliver_put`` then re-sends the body without the header.
When the object carries no SHA-256 (that case, or a server that ignores the header), ``verify``
downloads the object and hashes it instead, so a check is never skipped. Alternatives rejected:
``x-amz-meta-sha256`` signed into the URL and ``Content-MD5`` signed into the URL both need the digest
when the URL is made, before the render; an unsigned ``Content-MD5`` is checked by S3 but the worker
reports a SHA-256, not an MD5, so the ETag could not be compared with anything.
What moto 5.2 (the test server) does and does not check is measured in
``tests/integration/test_s3_storage.py``; ``tests/s3_endpoint.py`` adds the checks it lacks.

If a verification fails the object at the key is deleted (it is not what the worker rendered), so no
wrong bytes stay at a final key; on a versioned bucket the previous version survives as non-current.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError
from prefect_aws import S3Bucket

from blocks.s3 import MAX_PRESIGNED_EXPIRY_S, S3OutputStorage, endpoint_of, s3_client
from worker_image.contract import PutUrlOutput

from .errors import StorageError
from .keys import MAX_KEY_BYTES
from .storage import UrlKind

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20


def _prefect_logger() -> Any:
    """The run logger inside a flow/task run, else this module's logger."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a run (set-up command, plain tests)
        return log


def _client_error_code(exc: ClientError) -> str:
    err = exc.response.get("Error", {})
    return str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "?")


class S3Storage:
    """Outputs in an S3/MinIO bucket (the Storage protocol of ``tasks.storage``).

    Args:
        config: The S3OutputStorage block (bucket, credentials, URL settings).
        name: The block name, shown in logs and messages.
        check: Check the bucket with a HEAD request now (what :meth:`load` does), so wrong credentials or
            a missing bucket fail before any render starts.

    Raises:
        StorageError: (``check=True``) the bucket does not exist, the credentials are refused, or the
            endpoint cannot be reached; the message names the bucket and the endpoint.
    """

    def __init__(self, config: S3OutputStorage, *, name: str = "s3", check: bool = True) -> None:
        self.config = config
        self.name = name
        self.bucket_name = config.bucket.bucket_name
        self.endpoint = endpoint_of(config.bucket)
        self.folder = (config.bucket.bucket_folder or "").strip("/")
        self._client = s3_client(config.bucket)
        if check:
            self.check_bucket()

    @classmethod
    def load(cls, block_name: str) -> "S3Storage":
        """Load the storage a flow's ``storage`` parameter names and check its bucket.

        ``block_name`` is an :class:`~blocks.s3.S3OutputStorage` block, or a bare prefect-aws ``S3Bucket``
        block (then result URLs are presigned GETs of the default lifetime). Talks to the Prefect API, so
        call it inside a flow run.

        Raises:
            StorageError: no block of either type has that name, or the bucket check fails.
        """
        try:
            config = S3OutputStorage.load(block_name)
        except ValueError:
            try:
                config = S3OutputStorage(bucket=S3Bucket.load(block_name))
            except ValueError:
                raise StorageError(
                    f"storage {block_name!r}: no S3 Output Storage or S3 Bucket block of that name "
                    f"(create one with: python -m blocks.s3 setup --name {block_name})") from None
        return cls(config, name=block_name, check=True)

    # -- keys and errors

    def object_key(self, key: str) -> str:
        """The S3 object key of a flow key: ``<bucket_folder>/<key>`` (or ``key`` without a folder).

        Raises:
            StorageError: the full key is over S3's 1024-byte limit.
        """
        full = f"{self.folder}/{key}" if self.folder else key
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise StorageError(f"key {key!r} with bucket folder {self.folder!r} is over {MAX_KEY_BYTES} bytes")
        return full

    def _error(self, exc: Exception, doing: str) -> StorageError:
        """A StorageError naming the bucket and the endpoint for a boto3 failure (never a secret)."""
        where = f"bucket {self.bucket_name!r} at {self.endpoint}"
        if isinstance(exc, ClientError):
            code = _client_error_code(exc)
            if code in ("404", "NoSuchBucket"):
                return StorageError(f"{where}: the bucket does not exist ({doing})")
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"):
                return StorageError(f"{where}: access denied while {doing} ({code}); check the access key and "
                                    "secret in the credentials block and the key's permissions on the bucket")
            if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
                return StorageError(f"{where}: wrong region for this bucket while {doing} ({code})")
            message = exc.response.get("Error", {}).get("Message") or ""
            return StorageError(f"{where}: {doing} failed: {code} {message}".rstrip())
        return StorageError(f"{where}: {doing} failed: {type(exc).__name__}: {exc}")

    # -- bucket

    def check_bucket(self) -> None:
        """HEAD the bucket: it exists and these credentials may use it.

        Raises:
            StorageError: missing bucket, refused credentials, wrong region or unreachable endpoint.
        """
        try:
            self._client.head_bucket(Bucket=self.bucket_name)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "checking the bucket") from None

    def create_bucket(self) -> None:
        """Create the bucket when it does not exist (set-up convenience for MinIO and tests).

        Raises:
            StorageError: the bucket cannot be created (refused credentials, unreachable endpoint...).
        """
        try:
            self._client.head_bucket(Bucket=self.bucket_name)
            return
        except ClientError as exc:
            if _client_error_code(exc) not in ("404", "NoSuchBucket"):
                raise self._error(exc, "checking the bucket") from None
        except BotoCoreError as exc:
            raise self._error(exc, "checking the bucket") from None
        region = self.config.bucket.credentials.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket_name}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "creating the bucket") from None

    # -- the Storage protocol

    def target_for(self, key: str, *, expires_s: int) -> PutUrlOutput:
        """A presigned PUT URL for ``key``; the render job uploads to it.

        The URL lives ``max(expires_s, presigned_put_min_expiry_s)`` seconds: the caller passes the job's
        timeout (``tasks.planning.DEFAULT_UPLOAD_EXPIRY_S``, 1 h), and the block's floor (default 4 h)
        keeps the URL alive for backends whose jobs may queue longer. Only the method, bucket and key are
        signed: the worker may add ``Content-Type`` and ``x-amz-checksum-sha256``.

        Raises:
            StorageError: ``expires_s`` outside 1 .. 604800 (SigV4's 7-day limit), or signing failed.
        """
        if not 1 <= expires_s <= MAX_PRESIGNED_EXPIRY_S:
            raise StorageError(f"upload URL lifetime {expires_s} s is outside 1..{MAX_PRESIGNED_EXPIRY_S} s "
                               "(SigV4 presigned URLs live at most 7 days)")
        expires_s = max(expires_s, self.config.presigned_put_min_expiry_s)
        try:
            url = self._client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket_name, "Key": self.object_key(key)}, ExpiresIn=expires_s)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"presigning the upload of key {key!r}") from None
        return PutUrlOutput(url=url, key=key)

    def verify(self, key: str, *, size_bytes: int, sha256: str) -> None:
        """Check with a HEAD request that the object at ``key`` has this size and SHA-256.

        Compares ``ContentLength`` with ``size_bytes`` and the stored ``ChecksumSHA256`` (base64) with
        ``sha256`` (hex); when the object has no stored SHA-256, downloads it and hashes it. A mismatching
        object is deleted before raising.

        Raises:
            StorageError: no object at the key, size or checksum differ, or S3 refused the request.
        """
        object_key = self.object_key(key)
        try:
            head = self._client.head_object(Bucket=self.bucket_name, Key=object_key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _client_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise StorageError(f"key {key!r}: no object in bucket {self.bucket_name!r} after the render "
                                   "reported success") from None
            raise self._error(exc, f"checking key {key!r}") from None
        except BotoCoreError as exc:
            raise self._error(exc, f"checking key {key!r}") from None
        actual_size = int(head.get("ContentLength", -1))
        if actual_size != size_bytes:
            self._discard(object_key)
            raise StorageError(f"key {key!r}: {actual_size} bytes in bucket {self.bucket_name!r}, the worker "
                               f"reported {size_bytes}; the object was removed")
        stored = head.get("ChecksumSHA256")
        if stored:
            try:
                stored_hex = base64.b64decode(stored.split("-", 1)[0], validate=True).hex()
            except (binascii.Error, ValueError):
                stored_hex = ""
            matches = stored_hex == sha256.lower()
            how = "stored x-amz-checksum-sha256"
        else:
            matches = self._download_sha256(object_key) == sha256.lower()
            how = "downloaded bytes (the server stored no SHA-256)"
        if not matches:
            self._discard(object_key)
            raise StorageError(f"key {key!r}: SHA-256 of the {how} differs from the worker's report; the object "
                               "was removed")
        _prefect_logger().info("verified key %s in bucket %s: %d bytes, SHA-256 from %s", key, self.bucket_name,
                               size_bytes, how)

    def url_for(self, key: str) -> tuple[str, UrlKind]:
        """The URL handed back for ``key``: ``public_base_url/<url-encoded object key>`` (``"public"``) or
        a presigned GET valid ``presigned_get_expiry_s`` (``"presigned"``).

        The key is percent-encoded as UTF-8 with ``/`` kept: a space is ``%20``, ``+`` is ``%2B``, ``%``
        is ``%25``, ``ç`` is ``%C3%A7``.

        Raises:
            StorageError: presigning failed.
        """
        object_key = self.object_key(key)
        if self.config.public_base_url:
            return f"{self.config.public_base_url}/{quote(object_key, safe='/')}", "public"
        try:
            url = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket_name, "Key": object_key},
                ExpiresIn=self.config.presigned_get_expiry_s)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"presigning the download of key {key!r}") from None
        return url, "presigned"

    def accepts_local_inputs(self) -> bool:
        """True: where outputs are stored does not limit where inputs come from.

        Whether local paths may be inputs depends only on the renderer (the local backend renders on this
        machine; a remote one cannot read its files), and the flow asks both:
        ``store.accepts_local_inputs() and renderer.local_inputs_ok``.
        """
        return True

    # -- reading back (tests, merges)

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes (for tests and small objects).

        Raises:
            StorageError: no such object, or S3 refused the request.
        """
        try:
            return self._client.get_object(Bucket=self.bucket_name, Key=self.object_key(key))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"reading key {key!r}") from None

    def _download_sha256(self, object_key: str) -> str:
        try:
            body = self._client.get_object(Bucket=self.bucket_name, Key=object_key)["Body"]
            digest = hashlib.sha256()
            for chunk in iter(lambda: body.read(_CHUNK_BYTES), b""):
                digest.update(chunk)
            return digest.hexdigest()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"downloading key {object_key!r} to hash it") from None

    def _discard(self, object_key: str) -> None:
        """Delete an object that failed verification; a failure to delete is logged, not raised."""
        try:
            self._client.delete_object(Bucket=self.bucket_name, Key=object_key)
        except (ClientError, BotoCoreError) as exc:
            _prefect_logger().warning("could not remove unverified key %s from bucket %s: %s", object_key,
                                      self.bucket_name, self._error(exc, "removing it"))
