"""One remote's bucket through boto3: the few S3 calls sdhub makes, with errors a user can act on.

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
``~/.aws/credentials``, instance roles) or the remote's profile; sdhub never stores or prints them.
Every botocore failure leaves here as an ``SdhubError`` with one line of text, server text escaped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from sdhub.config import env
from sdhub.errors import AuthError, NetworkError, NotFoundError, SdhubError, UsageError
from sdhub.remote.settings import Remote
from sdhub.text import printable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # noqa: F401

#: Bytes per multipart part and per ranged GET (``SDHUB_REMOTE_PART_SIZE`` changes it; S3's minimum is 5 MiB).
DEFAULT_PART_SIZE = 16 << 20
#: Parts or ranges in flight at once (``SDHUB_REMOTE_CONNECTIONS``).
DEFAULT_CONNECTIONS = 8
NO_CREDENTIALS = "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile"


class PreconditionFailed(Exception):
    """A conditional write lost (HTTP 412): another writer changed the object first."""


@dataclass(frozen=True)
class Transfer:
    """How big and how parallel transfers are."""

    part_size: int
    connections: int

    @classmethod
    def from_env(cls) -> "Transfer":
        def number(name: str, default: int, least: int) -> int:
            text = env(name)
            try:
                value = int(text) if text else default
            except ValueError:
                raise UsageError(f"{name}={text!r} is not a whole number") from None
            return max(least, value)

        return cls(number("SDHUB_REMOTE_PART_SIZE", DEFAULT_PART_SIZE, 64 << 10),
                   number("SDHUB_REMOTE_CONNECTIONS", DEFAULT_CONNECTIONS, 1))


def _client(remote: Remote, connections: int) -> Any:
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:  # pragma: no cover - boto3 is a dependency
        from sdhub.errors import MissingDependencyError
        raise MissingDependencyError("remotes need boto3: pip install boto3") from None
    try:
        session = boto3.Session(profile_name=remote.profile) if remote.profile else boto3.Session()
    except botocore.exceptions.ProfileNotFound:
        raise AuthError(f"the AWS profile {remote.profile!r} is not in ~/.aws/config or ~/.aws/credentials") from None
    if session.get_credentials() is None:
        raise AuthError(NO_CREDENTIALS)
    config = botocore.config.Config(
        max_pool_connections=connections + 4, connect_timeout=10, read_timeout=120,
        retries={"max_attempts": 5, "mode": "standard"},
        # sdhub sends its own SHA-256 checksums; botocore's default CRC32 on every request would cost CPU and
        # trips stores that do not know the newer checksum headers.
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if remote.endpoint else None)
    return session.client("s3", endpoint_url=remote.endpoint, config=config,
                          region_name=session.region_name or "us-east-1")


class Bucket:
    """The remote's bucket: keys are relative to its prefix; every method raises ``SdhubError``s."""

    def __init__(self, remote: Remote, transfer: Transfer | None = None) -> None:
        self.remote = remote
        self.transfer = transfer or Transfer.from_env()
        self.client = _client(remote, self.transfer.connections)

    # -- errors -----------------------------------------------------------------------------------

    def error(self, error: BaseException, what: str) -> SdhubError:
        """The one-line ``SdhubError`` for a botocore failure while doing ``what`` (server text escaped)."""
        import botocore.exceptions as bx

        where = self.remote.endpoint or "AWS S3"
        if isinstance(error, SdhubError):
            return error
        if isinstance(error, bx.NoCredentialsError):
            return AuthError(NO_CREDENTIALS)
        if isinstance(error, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError,
                              bx.ReadTimeoutError, bx.HTTPClientError)):
            return NetworkError(f"cannot reach the remote {self.remote.name} at {printable(where)}: "
                                f"{printable(type(error).__name__)}; check --endpoint and the network")
        if isinstance(error, bx.ClientError):
            info = error.response.get("Error", {})
            code = str(info.get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = printable(str(info.get("Message", "")))[:200]
            if code == "NoSuchBucket" or (status == 404 and what.startswith("bucket")):
                return NotFoundError(f"the bucket {self.remote.bucket!r} does not exist at {printable(where)} "
                                     f"(remote {self.remote.name}); create it or fix the remote's URL")
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return AuthError(f"the remote {self.remote.name} refused access (403 {printable(code)}) while "
                                 f"{what}: check the credentials, --profile and the bucket's policy")
            return NetworkError(f"the remote {self.remote.name} answered {status} {printable(code)} while {what}"
                                + (f": {message}" if message else ""))
        if isinstance(error, bx.BotoCoreError):
            return NetworkError(f"the remote {self.remote.name} failed while {what}: {printable(error)}")
        raise error

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        import botocore.exceptions as bx

        try:
            return getattr(self.client, method)(Bucket=self.remote.bucket, **kwargs)
        except (bx.BotoCoreError, bx.ClientError) as error:
            if isinstance(error, bx.ClientError) and _status(error) == 412:
                raise PreconditionFailed(what) from None
            raise self.error(error, what) from None

    # -- objects ----------------------------------------------------------------------------------

    def check(self) -> None:
        """Fail with one line unless the bucket can be reached with these credentials."""
        self._call("bucket check", "head_bucket")

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's headers, or None when it does not exist."""
        import botocore.exceptions as bx

        try:
            return self.client.head_object(Bucket=self.remote.bucket, Key=self.remote.key(key))
        except bx.ClientError as error:
            if _status(error) == 404:
                return None
            raise self.error(error, f"looking at {key}") from None
        except bx.BotoCoreError as error:
            raise self.error(error, f"looking at {key}") from None

    def get_bytes(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[bytes, str] | None:
        """(bytes, ETag) of an object or of ``byte_range`` (first, last) in it; None when it does not exist."""
        import botocore.exceptions as bx

        extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        try:
            answer = self.client.get_object(Bucket=self.remote.bucket, Key=self.remote.key(key), **extra)
            return answer["Body"].read(), answer.get("ETag", "")
        except bx.ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchKey" or _status(error) == 404:
                return None
            raise self.error(error, f"reading {key}") from None
        except bx.BotoCoreError as error:
            raise self.error(error, f"reading {key}") from None

    def get_json(self, key: str) -> tuple[Any, str] | None:
        """(parsed JSON, ETag) of an object, None when absent; an object that is not JSON is an error."""
        found = self.get_bytes(key)
        if found is None:
            return None
        try:
            return json.loads(found[0]), found[1]
        except ValueError:
            raise NetworkError(f"{self.remote.key(key)} on the remote {self.remote.name} is not JSON; "
                               "another program wrote it?") from None

    def put_bytes(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False,
                  checksum_sha256: str | None = None, content_type: str = "application/octet-stream") -> str:
        """Write an object; ``if_match``/``if_none_match`` make it conditional (PreconditionFailed on 412)."""
        extra: dict[str, Any] = {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if checksum_sha256:
            extra["ChecksumSHA256"] = checksum_sha256
        answer = self._call(f"writing {key}", "put_object", Key=self.remote.key(key), Body=data,
                            ContentType=content_type, **extra)
        return answer.get("ETag", "")

    def put_json(self, key: str, value: Any, **conditions: Any) -> str:
        data = json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
        return self.put_bytes(key, data, content_type="application/json", **conditions)

    def delete(self, key: str) -> None:
        self._call(f"deleting {key}", "delete_object", Key=self.remote.key(key))

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys (relative to the remote's prefix) under ``prefix``, in order."""
        token: dict[str, Any] = {}
        while True:
            answer = self._call(f"listing {prefix}", "list_objects_v2", Prefix=self.remote.key(prefix), **token)
            for item in answer.get("Contents", []):
                yield item["Key"][len(self.remote.key("")):]
            if not answer.get("IsTruncated"):
                return
            token = {"ContinuationToken": answer["NextContinuationToken"]}

    def probe_conditional_writes(self) -> bool:
        """Whether the store refuses a second ``If-None-Match: *`` write of one key (rclone serve s3 does not)."""
        key = f".sdhub-probe/{os.urandom(8).hex()}"
        self.put_bytes(key, b"1", if_none_match=True)
        try:
            self.put_bytes(key, b"2", if_none_match=True)
            honoured = False
        except PreconditionFailed:
            honoured = True
        except NetworkError:  # a store that rejects the header outright (501) has no conditional writes
            honoured = False
        self.delete(key)
        return honoured


def _status(error: Any) -> int | None:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
