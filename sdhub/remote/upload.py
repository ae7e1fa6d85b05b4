"""Sending one file's bytes to its blob key: skipped when the blob is there, one PUT when small, else a
multipart upload with several parts in flight, each with its SHA-256 checksum, resumed after a kill by
listing the parts the store already holds and sending only the others."""

from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdhub.progress import ProgressTask, check_cancelled
from sdhub.remote.bucket import Bucket, PreconditionFailed
from sdhub.remote.layout import blob_key


@dataclass
class BlobUpload:
    """What sending one blob took: ``already_there`` (nothing sent), parts sent and parts found from before."""

    sha256: str
    size: int
    already_there: bool = False
    bytes_sent: int = 0
    parts_sent: int = 0
    parts_reused: int = 0


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _read(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise OSError(f"the file shrank while being sent (read {len(data)} of {length} bytes at {offset})")
    return data


def upload_blob(bucket: Bucket, path: Path, sha256: str, size: int, task: ProgressTask) -> BlobUpload:
    """Make sure the remote holds ``path``'s bytes under ``blob_key(sha256)``."""
    key = blob_key(sha256)
    result = BlobUpload(sha256, size)
    head = bucket.head(key)
    if head is not None and head.get("ContentLength") == size:
        result.already_there = True
        task.advance(size)
        return result
    part_size = bucket.transfer.part_size
    with open(path, "rb") as handle:
        fd = handle.fileno()
        if size <= part_size:
            data = _read(fd, 0, size)
            try:
                bucket.put_bytes(key, data, checksum_sha256=_b64(bytes.fromhex(sha256)),
                                 if_none_match=bucket.remote.conditional_writes is True)
            except PreconditionFailed:  # another machine sent the same bytes meanwhile
                pass
            result.bytes_sent, result.parts_sent = size, 1
            task.advance(size)
            return result
        _multipart(bucket, key, fd, sha256, size, part_size, task, result)
    return result


def _part_ranges(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """(part number, offset, length) of each part."""
    return [(number + 1, offset, min(part_size, size - offset))
            for number, offset in enumerate(range(0, size, part_size))]


def _open_upload(bucket: Bucket, key: str, sha256: str, parts: list[tuple[int, int, int]]
                 ) -> tuple[str, dict[int, dict[str, Any]]]:
    """An upload of ``key`` left by an earlier push whose parts fit this plan (with its parts), or a new one."""
    full_key = bucket.remote.key(key)
    try:
        uploads = bucket._call(f"listing uploads of {key}", "list_multipart_uploads", Prefix=full_key).get("Uploads", [])
    except Exception as error:  # rclone answers NoSuchUpload on a bucket that never had one
        if "NoSuchUpload" not in str(error):
            raise
        uploads = []
    lengths = {number: length for number, _, length in parts}
    for upload in sorted((u for u in uploads if u.get("Key") == full_key), key=lambda u: str(u.get("Initiated")),
                         reverse=True):
        listed: dict[int, dict[str, Any]] = {}
        marker: dict[str, Any] = {}
        while True:
            answer = bucket._call(f"listing parts of {key}", "list_parts", Key=full_key, UploadId=upload["UploadId"],
                                  **marker)
            for part in answer.get("Parts", []):
                listed[int(part["PartNumber"])] = part
            if not answer.get("IsTruncated"):
                break
            marker = {"PartNumberMarker": answer["NextPartNumberMarker"]}
        if all(lengths.get(number) == part.get("Size") for number, part in listed.items()):
            return upload["UploadId"], listed
        bucket._call(f"abandoning an old upload of {key}", "abort_multipart_upload", Key=full_key,
                     UploadId=upload["UploadId"])
    created = bucket._call(f"starting the upload of {key}", "create_multipart_upload", Key=full_key,
                           ChecksumAlgorithm="SHA256", Metadata={"sha256": sha256})
    return created["UploadId"], {}


def _multipart(bucket: Bucket, key: str, fd: int, sha256: str, size: int, part_size: int, task: ProgressTask,
               result: BlobUpload) -> None:
    parts = _part_ranges(size, part_size)
    upload_id, listed = _open_upload(bucket, key, sha256, parts)
    full_key = bucket.remote.key(key)
    done: dict[int, dict[str, str]] = {}
    pending = []
    for number, offset, length in parts:
        old = listed.get(number)
        if old is not None:
            checksum = _b64(hashlib.sha256(_read(fd, offset, length)).digest())
            if old.get("ChecksumSHA256") in (None, checksum):  # a part that is not these bytes is sent again
                done[number] = {"PartNumber": number, "ETag": old["ETag"], "ChecksumSHA256": checksum}
                result.parts_reused += 1
                task.advance(length)
                continue
        pending.append((number, offset, length))

    def send(number: int, offset: int, length: int) -> dict[str, str]:
        data = _read(fd, offset, length)
        checksum = _b64(hashlib.sha256(data).digest())
        answer = bucket._call(f"sending part {number} of {key}", "upload_part", Key=full_key, UploadId=upload_id,
                              PartNumber=number, Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum)
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

    connections = bucket.transfer.connections
    with ThreadPoolExecutor(connections, thread_name_prefix="sdhub-push") as pool:
        in_flight: dict[Future[dict[str, str]], int] = {}
        queue = list(pending)
        try:
            while queue or in_flight:
                while queue and len(in_flight) < connections:
                    number, offset, length = queue.pop(0)
                    in_flight[pool.submit(send, number, offset, length)] = length
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    length = in_flight.pop(future)
                    part = future.result()
                    done[part["PartNumber"]] = part
                    result.parts_sent += 1
                    result.bytes_sent += length
                    task.advance(length)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    check_cancelled()
    bucket._call(f"finishing the upload of {key}", "complete_multipart_upload", Key=full_key, UploadId=upload_id,
                 MultipartUpload={"Parts": [done[number] for number in sorted(done)]})
