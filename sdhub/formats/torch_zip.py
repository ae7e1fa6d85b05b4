"""The torch zip container (``torch.save`` since 1.6): strict parsing of the archive layout.

The central directory is parsed by hand and cross-checked with every local header; each
record's bytes are located by offset in the file so tensors can be copied or mapped straight
from it. Anything torch would read differently from us is refused: a compressed or encrypted
record, leading junk, names outside the archive's single prefix, duplicate or unknown names,
TorchScript archives, overlapping records.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass

from sdhub.errors import BadInputError, UnsafeFileError
from sdhub.formats import pickle_allowlist as allow
from sdhub.formats.pickle_values import Global, StorageRef

ZIP_MAGIC = b"PK\x03\x04"
_EOCD = struct.Struct("<4sHHHHIIH")          # end of central directory (22 bytes)
_ZIP64_LOCATOR = struct.Struct("<4sIQI")    # 20 bytes
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_LOCAL = struct.Struct("<4sHHHHHIIIHH")      # 30 bytes
_ALLOWED_FLAGS = 0x0008 | 0x0800  # data descriptor, UTF-8 names
_MAX_ENTRIES = 1_000_000
_MAX_DIRECTORY_BYTES = 256 * 1024 * 1024
_MAX_SMALL_RECORD = 4096  # version, byteorder and the like

_RECORD_NAME = re.compile(
    r"(data\.pkl|data/\d+|version|byteorder|\.format_version|\.storage_alignment|"
    r"\.data/serialization_id|\.data/version)"
)


@dataclass(frozen=True)
class Record:
    """One archive member: where its bytes start in the file and how many there are."""

    name: str
    offset: int
    size: int
    crc32: int


@dataclass
class ZipContainer:
    """A validated torch zip archive: its prefix, records and byte order."""

    prefix: str
    records: dict[str, Record]
    byteorder: str

    def storage_record(self, key: str) -> Record | None:
        return self.records.get(f"data/{key}")


def _read_at(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise BadInputError("truncated")
    return data


def _zip64_values(extra: bytes, wanted: list[str]) -> dict[str, int]:
    """The zip64 extended-information values for the fields that overflowed, in spec order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        if tag == 0x0001:
            if len(body) < 8 * len(wanted):
                raise BadInputError("short zip64 field")
            return {name: struct.unpack_from("<Q", body, 8 * i)[0] for i, name in enumerate(wanted)}
        pos += 4 + length
    if wanted:
        raise BadInputError("missing zip64 field")
    return {}


def read_zip(fd: int, size: int, source: str) -> ZipContainer:
    """Parse and validate the archive in ``fd`` (``size`` bytes); raise with ``source`` in messages."""
    try:
        return _read_zip(fd, size, source)
    except (BadInputError, UnsafeFileError) as error:
        if error.message.startswith(source):
            raise
        raise type(error)(f"{source}: {error.message}") from None
    except (struct.error, UnicodeDecodeError, OverflowError, ValueError) as error:
        raise BadInputError(f"{source}: corrupt zip archive ({error}); refusing it") from None


def _find_eocd(fd: int, size: int) -> int:
    tail_start = max(0, size - (_EOCD.size + 0xFFFF))
    tail = _read_at(fd, tail_start, size - tail_start)
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0:
        if pos + _EOCD.size <= len(tail):
            comment_length = struct.unpack_from("<H", tail, pos + 20)[0]
            if tail_start + pos + _EOCD.size + comment_length == size:
                return tail_start + pos
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    raise BadInputError("not a complete zip archive (no end record; truncated?)")


def _read_zip(fd: int, size: int, source: str) -> ZipContainer:
    if size < _LOCAL.size + _EOCD.size or _read_at(fd, 0, 4) != ZIP_MAGIC:
        raise BadInputError("not a torch zip archive")
    eocd_at = _find_eocd(fd, size)
    (_, disk, cd_disk, _, entries, cd_size, cd_offset, _) = _EOCD.unpack(_read_at(fd, eocd_at, _EOCD.size))
    if disk or cd_disk:
        raise BadInputError("multi-disk zip archives are not torch files")
    cd_end_limit = eocd_at
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        locator_at = eocd_at - _ZIP64_LOCATOR.size
        sig, _, zip64_at, _ = _ZIP64_LOCATOR.unpack(_read_at(fd, locator_at, _ZIP64_LOCATOR.size))
        if sig != b"PK\x06\x07" or zip64_at + _ZIP64_EOCD.size > locator_at:
            raise BadInputError("broken zip64 end record")
        fields = _ZIP64_EOCD.unpack(_read_at(fd, zip64_at, _ZIP64_EOCD.size))
        if fields[0] != b"PK\x06\x06":
            raise BadInputError("broken zip64 end record")
        entries, cd_size, cd_offset = fields[7], fields[8], fields[9]
        cd_end_limit = zip64_at
    if entries > _MAX_ENTRIES or cd_size > _MAX_DIRECTORY_BYTES:
        raise BadInputError("the zip central directory is implausibly large")
    if cd_offset + cd_size > cd_end_limit:
        raise BadInputError("the zip central directory lies outside the file")
    directory = _read_at(fd, cd_offset, cd_size)

    records: dict[str, Record] = {}
    spans: list[tuple[int, int, str]] = []  # (local header start, data end, name) for the overlap check
    prefix: str | None = None
    pos = 0
    for _ in range(entries):
        (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
         _, _, _, local_at) = _CENTRAL.unpack_from(directory, pos)
        if sig != b"PK\x01\x02":
            raise BadInputError("corrupt zip central directory")
        pos += _CENTRAL.size
        raw_name = directory[pos:pos + name_len]
        extra = directory[pos + name_len:pos + name_len + extra_len]
        pos += name_len + extra_len + comment_len
        if pos > len(directory):
            raise BadInputError("corrupt zip central directory")
        name = raw_name.decode("utf-8")
        wanted = [n for n, v in (("usize", usize), ("csize", csize), ("offset", local_at)) if v == 0xFFFFFFFF]
        big = _zip64_values(extra, wanted)
        usize, csize, local_at = big.get("usize", usize), big.get("csize", csize), big.get("offset", local_at)

        if flags & ~_ALLOWED_FLAGS:
            raise UnsafeFileError(f"zip record {name!r} has flags 0x{flags:04x} (encrypted or unusual); refusing it")
        if method != 0 or csize != usize:
            raise UnsafeFileError(f"zip record {name!r} is compressed; torch files store every record "
                                  "uncompressed, refusing it")
        if prefix is None:
            if "/" not in name:
                raise BadInputError(f"zip record {name!r} is not inside an archive folder; not a torch file")
            prefix = name.split("/", 1)[0]
        if not name.startswith(prefix + "/"):
            raise UnsafeFileError(f"zip record {name!r} lies outside the archive folder {prefix!r}; refusing it")
        short = name[len(prefix) + 1:]
        if short == "constants.pkl" or short.startswith("code/"):
            raise UnsafeFileError("is a TorchScript archive (it holds code); refusing it")
        if not _RECORD_NAME.fullmatch(short):
            raise UnsafeFileError(f"zip record {name!r} is not part of a torch checkpoint; refusing it")
        if short in records:
            raise UnsafeFileError(f"zip record {name!r} appears twice; refusing the ambiguous archive")

        local = _LOCAL.unpack(_read_at(fd, local_at, _LOCAL.size))
        (lsig, _, lflags, lmethod, _, _, lcrc, lcsize, lusize, lname_len, lextra_len) = local
        lname = _read_at(fd, local_at + _LOCAL.size, lname_len)
        if lsig != b"PK\x03\x04" or lname != raw_name or lmethod != method or lflags != flags:
            raise UnsafeFileError(f"zip record {name!r}: local header disagrees with the central directory; "
                                  "refusing it")
        if not flags & 0x0008 and (lcrc, lcsize, lusize) != (crc, csize, usize) and \
                (lcsize, lusize) != (0xFFFFFFFF, 0xFFFFFFFF):
            raise UnsafeFileError(f"zip record {name!r}: local sizes disagree with the central directory; "
                                  "refusing it")
        data_at = local_at + _LOCAL.size + lname_len + lextra_len
        if data_at + usize > cd_offset:
            raise BadInputError(f"zip record {name!r} runs past the end of the data (truncated?)")
        records[short] = Record(short, data_at, usize, crc)
        spans.append((local_at, data_at + usize, name))

    if pos != len(directory):
        raise BadInputError("corrupt zip central directory (trailing bytes)")
    if prefix is None or "data.pkl" not in records:
        raise BadInputError("no data.pkl in the archive; not a torch checkpoint")

    spans.sort()
    if spans[0][0] != 0:
        raise UnsafeFileError("has bytes before its first zip record; refusing it")
    for (_, end, name), (start, _, next_name) in zip(spans, spans[1:]):
        if start < end:
            raise UnsafeFileError(f"zip records {name!r} and {next_name!r} overlap; refusing the archive")

    byteorder = "little"
    if "byteorder" in records:
        byteorder = _small_record(fd, records["byteorder"]).strip()
        if byteorder not in ("little", "big"):
            raise BadInputError(f"unknown byte order {byteorder!r}")
    if "version" in records:
        version = _small_record(fd, records["version"]).strip()
        if not version.isdigit() or not 1 <= int(version) <= 20:
            raise BadInputError(f"unknown torch archive version {version!r}")
    return ZipContainer(prefix, records, byteorder)


def _small_record(fd: int, record: Record) -> str:
    if record.size > _MAX_SMALL_RECORD:
        raise BadInputError(f"zip record {record.name!r} is too large")
    return _read_at(fd, record.offset, record.size).decode("ascii")


def read_data_pickle(fd: int, container: ZipContainer, max_bytes: int) -> bytes:
    """The bytes of ``data.pkl``, checked against the archive's CRC-32."""
    record = container.records["data.pkl"]
    if record.size > max_bytes:
        raise BadInputError(f"data.pkl is {record.size} bytes, more than the {max_bytes} allowed")
    data = _read_at(fd, record.offset, record.size)
    if zlib.crc32(data) != record.crc32:
        raise BadInputError("data.pkl fails its CRC check (corrupt archive)")
    return data


def storage_loader(container: ZipContainer):
    """A ``persistent_load`` for zip archives: validate each storage id against the records."""
    seen: dict[str, StorageRef] = {}

    def load(pid: tuple) -> StorageRef:
        if len(pid) != 5:
            raise UnsafeFileError(f"storage id with {len(pid)} fields; expected 5")
        _, storage_type, key, location, numel = pid
        if not isinstance(key, str) or not isinstance(location, str) or type(numel) is not int or numel < 0:
            raise UnsafeFileError("malformed storage id")
        ref = _storage_ref(storage_type, key, numel)
        record = container.storage_record(key)
        if record is None:
            raise BadInputError(f"storage {key!r} is missing from the archive (truncated or corrupt)")
        if record.size != ref.nbytes:
            raise UnsafeFileError(f"storage {key!r} claims {ref.nbytes} bytes but its record holds {record.size}")
        previous = seen.setdefault(key, ref)
        if previous != ref:
            raise UnsafeFileError(f"storage {key!r} is described twice with different types or sizes")
        return ref

    return load


def _storage_ref(storage_type: object, key: str, numel: int) -> StorageRef:
    if not isinstance(storage_type, Global):
        raise UnsafeFileError("storage id without a storage type")
    pair = (storage_type.module, storage_type.name)
    if pair in allow.UNTYPED_STORAGES:
        return StorageRef(key, "U8", numel, untyped=True)
    dtype = allow.STORAGE_TYPES.get(pair)
    if dtype is None or dtype.startswith("unsupported:"):
        raise BadInputError(f"storage type {storage_type.dotted} cannot be stored in .safetensors")
    return StorageRef(key, dtype, numel)
