"""A real S3 HTTP endpoint on 127.0.0.1 for tests: moto's server behind a small SigV4-checking gateway.

moto 5.2's server speaks the S3 protocol but, measured (``tests/integration/test_s3_storage.py``),
does not check what real S3 and MinIO check: SigV4 signatures (any secret works), presigned URL expiry
(an expired URL still uploads), or ``x-amz-checksum-sha256`` against the body; and with its IAM mode
on, presigned requests fail with HTTP 500. The gateway in front of it checks those the way S3 does,
using botocore's own signer to recompute signatures, then forwards the request to moto unchanged:

- header (``Authorization``) and query (presigned) SigV4 signatures against one key pair: an unknown
  access key is 403 ``InvalidAccessKeyId``, a wrong secret 403 ``SignatureDoesNotMatch``;
- presigned URLs past ``X-Amz-Date + X-Amz-Expires``: 403 ``AccessDenied`` "Request has expired";
- ``x-amz-checksum-sha256`` that does not match the body: 400 ``BadDigest`` (nothing stored);
- with ``aws_unsigned_header_check`` on, unsigned ``x-amz-*`` headers on presigned requests:
  403 ``AccessDenied`` with ``HeadersNotSigned`` (what AWS S3 answers; MinIO accepts them);
- a body shorter than its ``Content-Length`` (client gone): nothing is forwarded, nothing stored.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ACCESS_KEY = "apigpu-test-access-key"
SECRET_KEY = "api-gpu-test-secret-0123456789abcdef"
REGION = "us-east-1"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def _error_xml(code: str, message: str, **extra: str) -> bytes:
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"{fields}</Error>").encode()


class S3Endpoint:
    """moto's S3 server plus the checking gateway, both on 127.0.0.1 (ephemeral ports).

    Attributes:
        endpoint_url: The gateway's URL: what clients, blocks and presigned URLs use.
        moto_url: moto's own URL (no checks), for measuring moto itself.
        aws_unsigned_header_check: Refuse unsigned ``x-amz-*`` headers on presigned requests like AWS S3.
        requests: ``(method, path without query, status)`` of every request the gateway answered.
    """

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log (it prints signed URLs)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_host, self.moto_port = host, port
        self.moto_url = f"http://{host}:{port}"
        self.aws_unsigned_header_check = False
        self.requests: list[tuple[str, str, int]] = []
        endpoint = self

        class Gateway(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                endpoint._handle(self)

            do_PUT = do_HEAD = do_DELETE = do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        gw_host, gw_port = self.server.server_address[:2]
        self.endpoint_url = f"http://{gw_host}:{gw_port}"

    # -- clients

    def client(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, direct: bool = False) -> Any:
        """A boto3 S3 client (path style, SigV4) to the gateway, or straight to moto with ``direct``."""
        return boto3.client(
            "s3", endpoint_url=self.moto_url if direct else self.endpoint_url, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                          request_checksum_calculation="when_required", retries={"max_attempts": 1}))

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return the name."""
        client = self.client()
        try:
            client.head_bucket(Bucket=name)
        except Exception:
            client.create_bucket(Bucket=name)
        return name

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.moto.stop()

    # -- the gateway

    def _reply(self, h: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"",
               headers: list[tuple[str, str]] | None = None) -> None:
        self.requests.append((h.command, urlsplit(h.path).path, status))
        h.send_response(status)
        sent_length = False
        for name, value in headers or [("Content-Type", "application/xml")]:
            if name.lower() in _HOP_BY_HOP:
                continue
            sent_length |= name.lower() == "content-length"
            h.send_header(name, value)
        if not sent_length:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD" and body:
            h.wfile.write(body)

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        declared = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(declared) if declared else b""
        if len(body) < declared:  # the client went away mid-body: S3 stores nothing
            self.requests.append((h.command, urlsplit(h.path).path, 0))
            h.close_connection = True
            return
        refusal = self._check_auth(h) or self._check_checksum(h, body)
        if refusal:
            status, code, message, extra = refusal
            self._reply(h, status, _error_xml(code, message, **extra))
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
        if "x-amz-checksum-sha256" in {k.lower() for k in headers}:
            headers["x-amz-sdk-checksum-algorithm"] = "SHA256"  # so moto keeps the checksum, as S3 does
        conn = http.client.HTTPConnection(self.moto_host, self.moto_port, timeout=30)
        try:
            conn.request(h.command, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            self._reply(h, resp.status, payload, resp.getheaders())
        finally:
            conn.close()

    def _check_checksum(self, h: http.server.BaseHTTPRequestHandler, body: bytes):
        claimed = h.headers.get("x-amz-checksum-sha256")
        if claimed is not None and claimed != base64.b64encode(hashlib.sha256(body).digest()).decode():
            return 400, "BadDigest", "The SHA256 you specified did not match the calculated checksum.", {}
        return None

    def _check_auth(self, h: http.server.BaseHTTPRequestHandler):
        parts = urlsplit(h.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        bucket = parts.path.lstrip("/").split("/", 1)[0]
        extra = {"BucketName": bucket} if bucket else {}
        host = h.headers.get("Host", "")
        denied = (403, "AccessDenied", "Access Denied", extra)
        if "X-Amz-Signature" in query:
            scope = query.get("X-Amz-Credential", "").split("/")
            if len(scope) != 5:
                return denied
            if scope[0] != ACCESS_KEY:
                return (403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
                        extra)
            signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            if time.time() > signed_at.timestamp() + int(query.get("X-Amz-Expires", "0")):
                return 403, "AccessDenied", "Request has expired", extra
            signed = query.get("X-Amz-SignedHeaders", "host").split(";")
            if self.aws_unsigned_header_check:
                unsigned = sorted(k.lower() for k in h.headers if k.lower().startswith("x-amz-")
                                  and k.lower() not in signed)
                if unsigned:
                    return (403, "AccessDenied", "There were headers present in the request which were not signed",
                            {"HeadersNotSigned": ", ".join(unsigned)})
            kept = "&".join(p for p in parts.query.split("&") if not p.startswith("X-Amz-Signature="))
            request = AWSRequest(method=h.command, url=f"http://{host}{parts.path}?{kept}",
                                 headers={k: h.headers[k] for k in signed if k != "host" and k in h.headers})
            request.context["timestamp"] = query["X-Amz-Date"]
            auth: S3SigV4Auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", scope[2],
                                                 expires=int(query["X-Amz-Expires"]))
            given = query["X-Amz-Signature"]
        elif "Authorization" in h.headers:
            header = h.headers["Authorization"]
            fields = dict(item.strip().split("=", 1) for item in header.split(" ", 1)[1].split(","))
            scope = fields.get("Credential", "").split("/")
            if len(scope) != 5:
                return denied
            if scope[0] != ACCESS_KEY:
                return (403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
                        extra)
            signed = fields.get("SignedHeaders", "host").split(";")
            request = AWSRequest(method=h.command, url=f"http://{host}{h.path}",
                                 headers={k: h.headers[k] for k in signed if k != "host" and k in h.headers})
            request.context["timestamp"] = h.headers.get("X-Amz-Date", "")
            auth = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", scope[2])
            given = fields.get("Signature", "")
        else:
            return denied
        canonical = auth.canonical_request(request)
        expected = auth.signature(auth.string_to_sign(request, canonical), request)
        if expected != given:
            return (403, "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.", extra)
        return None


def s3_endpoint_fixture():
    """Body of the session-scoped ``s3_endpoint`` fixture (see the conftests that import it)."""
    endpoint = S3Endpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()
