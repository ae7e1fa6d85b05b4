"""The torch zip container (``torch.save`` since 1.6): strict parsing of the archive layout.

The central directory is parsed by hand and cross-checked with every local header; each
record's bytes are located by offset in the file so tensors can be copied or mapped straight
from it. Anything torch would read differently from us is refused: a compressed or encrypted
record, leading junk, names outside the archive's single prefix, duplicate or unknown names,
TorchScript archives, overlapping records. So is anything two zip readers could read as two
archives: a second end record, zip64 and plain end records that disagree, and bytes no record
accounts for between the records, the central directory and the end records.
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
_EOCD_SIGNATURE = b"PK\x05\x06"
_DOS_FOLDER = 0x10  # external attribute bit: miniz treats such a record as a folder and reads nothing
#: Folder entries some archivers add (``NAME/``, no data): the archive folder and its subfolders.
_FOLDERS = ("", "data/", ".data/")

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
        return _read_zip(_Bounded(fd, size), source)
    except (BadInputError, UnsafeFileError) as error:
        if error.message.startswith(source):
            raise
        raise type(error)(f"{source}: {error.message}") from None
    except (struct.error, UnicodeDecodeError, OverflowError, ValueError) as error:
        raise BadInputError(f"{source}: corrupt zip archive ({error}); refusing it") from None
    except OSError as error:
        raise BadInputError(f"{source}: cannot be read ({error.strerror or error})") from None


class _Bounded:
    """Reads of the archive that never reach outside the file, whatever offset a field claims."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read(self, offset: int, length: int, what: str = "a zip field") -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BadInputError(f"{what} points outside the file (truncated or corrupt)")
        return _read_at(self.fd, offset, length)


_AMBIGUOUS = "refusing the ambiguous archive"


def _find_end_record(file: _Bounded) -> int:
    """The end record torch's zip reader takes, when no other reader could take another one.

    miniz (torch's reader) takes the last end-record signature in the file's tail that has a whole
    record after it, Python's ``zipfile`` the last signature, and readers that check the comment
    length the last one whose comment ends where the file does. All must find the same record,
    and no earlier signature may also pass for an end record.
    """
    tail_start = max(0, file.size - _EOCD.size - 0xFFFF)
    tail = file.read(tail_start, file.size - tail_start)
    last = tail.rfind(_EOCD_SIGNATURE)
    if last < 0:
        raise BadInputError("not a complete zip archive (no end record; truncated?)")
    if last + _EOCD.size > len(tail):
        raise UnsafeFileError(f"ends in an end-record signature too short to be one (zipfile takes it, torch's "
                              f"reader skips it); {_AMBIGUOUS}")
    if _comment_end(tail, last) != len(tail):
        raise UnsafeFileError(f"its last zip end record does not end where the file does (an end record hidden "
                              f"in another's comment, or bytes appended); {_AMBIGUOUS}")
    earlier = tail.rfind(_EOCD_SIGNATURE, 0, last)
    while earlier >= 0:
        if _comment_end(tail, earlier) == len(tail):
            raise UnsafeFileError(f"has two zip end records, one inside the other's comment; {_AMBIGUOUS}")
        earlier = tail.rfind(_EOCD_SIGNATURE, 0, earlier)
    return tail_start + last


def _comment_end(tail: bytes, at: int) -> int:
    if at + _EOCD.size > len(tail):
        return -1
    return at + _EOCD.size + struct.unpack_from("<H", tail, at + 20)[0]


def _central_directory(file: _Bounded, eocd_at: int) -> tuple[int, int, int]:
    """(entries, size, offset) of the one central directory both end records describe.

    torch's reader and ``zipfile`` use the zip64 end record whenever a locator sits just before
    the plain one; readers without zip64 use the plain record. Each plain field must therefore
    equal its zip64 counterpart (or be saturated), and the directory must end where the end
    records begin, so no bytes lie between them.
    """
    (_, disk, cd_disk, entries_here, entries, cd_size, cd_offset, _) = _EOCD.unpack(file.read(eocd_at, _EOCD.size))
    if disk or cd_disk or entries_here != entries:
        raise BadInputError("multi-disk zip archives are not torch files")
    saturated = entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF
    locator_at = eocd_at - _ZIP64_LOCATOR.size
    directory_end = eocd_at
    if locator_at >= 0 and file.read(locator_at, 4) == b"PK\x06\x07":
        _, zip64_disk, zip64_at, disks = _ZIP64_LOCATOR.unpack(file.read(locator_at, _ZIP64_LOCATOR.size))
        if zip64_disk != 0 or disks != 1:
            raise BadInputError("multi-disk zip archives are not torch files")
        if zip64_at != locator_at - _ZIP64_EOCD.size:
            raise UnsafeFileError(f"its zip64 locator points away from the zip64 end record before it (zip readers "
                                  f"disagree on which to use); {_AMBIGUOUS}")
        (signature, record_size, _, _, disk, cd_disk, wide_here, wide_entries, wide_size, wide_offset) = \
            _ZIP64_EOCD.unpack(file.read(zip64_at, _ZIP64_EOCD.size))
        if signature != b"PK\x06\x06" or record_size != _ZIP64_EOCD.size - 12:
            raise UnsafeFileError(f"has a zip64 locator without a well-formed zip64 end record; {_AMBIGUOUS}")
        if disk or cd_disk or wide_here != wide_entries:
            raise BadInputError("multi-disk zip archives are not torch files")
        for plain, wide, full in ((entries, wide_entries, 0xFFFF), (cd_size, wide_size, 0xFFFFFFFF),
                                  (cd_offset, wide_offset, 0xFFFFFFFF)):
            if plain not in (wide, full):
                raise UnsafeFileError(f"its zip64 and plain end records describe different central directories "
                                      f"(torch reads the zip64 one); {_AMBIGUOUS}")
        entries, cd_size, cd_offset, directory_end = wide_entries, wide_size, wide_offset, zip64_at
    elif saturated:
        raise BadInputError("the zip end record needs a zip64 end record and there is none (truncated or corrupt)")
    if entries > _MAX_ENTRIES or cd_size > _MAX_DIRECTORY_BYTES:
        raise BadInputError("the zip central directory is implausibly large")
    if cd_offset + cd_size > directory_end:
        raise BadInputError("the zip central directory lies outside the file")
    if cd_offset + cd_size < directory_end:
        raise UnsafeFileError(f"has {directory_end - cd_offset - cd_size} unaccounted bytes between its zip central "
                              f"directory and its end record; {_AMBIGUOUS}")
    return entries, cd_size, cd_offset


@dataclass(frozen=True)
class _Span:
    """Where one record lies in the file, for the check that records tile the data area."""

    start: int
    data_end: int
    name: str
    descriptor: bool   # general-purpose flag bit 3: a data descriptor may follow the data
    crc32: int
    size: int


def _read_zip(file: _Bounded, source: str) -> ZipContainer:
    if file.size < _LOCAL.size + _EOCD.size or file.read(0, 4) != ZIP_MAGIC:
        raise BadInputError("not a torch zip archive")
    entries, cd_size, cd_offset = _central_directory(file, _find_end_record(file))
    directory = file.read(cd_offset, cd_size)

    records: dict[str, Record] = {}
    folders: set[str] = set()
    spans: list[_Span] = []
    prefix: str | None = None
    pos = 0
    for _ in range(entries):
        (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
         disk_start, _, external, local_at) = _CENTRAL.unpack_from(directory, pos)
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

        if disk_start:
            raise BadInputError("multi-disk zip archives are not torch files")
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
        if short in _FOLDERS:
            # Some archivers list the folders too; an empty folder entry changes nothing torch reads.
            if usize:
                raise UnsafeFileError(f"zip folder entry {name!r} holds {usize} bytes; refusing it")
            if short in folders:
                raise UnsafeFileError(f"zip record {name!r} appears twice; refusing the ambiguous archive")
            folders.add(short)
        elif not _RECORD_NAME.fullmatch(short):
            raise UnsafeFileError(f"zip record {name!r} is not part of a torch checkpoint; refusing it")
        elif short in records:
            raise UnsafeFileError(f"zip record {name!r} appears twice; refusing the ambiguous archive")
        elif external & _DOS_FOLDER:
            raise UnsafeFileError(f"zip record {name!r} is marked as a folder (torch would read it as empty); "
                                  "refusing it")

        if local_at + _LOCAL.size > cd_offset:
            raise BadInputError(f"zip record {name!r} starts outside the archive data (truncated or corrupt)")
        header = file.read(local_at, _LOCAL.size + name_len, f"zip record {name!r}")
        (lsig, _, lflags, lmethod, _, _, lcrc, lcsize, lusize, lname_len, lextra_len) = _LOCAL.unpack_from(header)
        lname = header[_LOCAL.size:_LOCAL.size + lname_len]
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
        if short not in _FOLDERS:
            records[short] = Record(short, data_at, usize, crc)
        spans.append(_Span(local_at, data_at + usize, name, bool(flags & 0x0008), crc, usize))

    if pos != len(directory):
        raise BadInputError("corrupt zip central directory (trailing bytes)")
    if prefix is None or "data.pkl" not in records:
        raise BadInputError("no data.pkl in the archive; not a torch checkpoint")
    _check_tiling(file, spans, cd_offset)

    byteorder = "little"
    if "byteorder" in records:
        byteorder = _small_record(file.fd, records["byteorder"]).strip()
        if byteorder not in ("little", "big"):
            raise BadInputError(f"unknown byte order {byteorder!r}")
    if "version" in records:
        version = _small_record(file.fd, records["version"]).strip()
        if not version.isdigit() or not 1 <= int(version) <= 20:
            raise BadInputError(f"unknown torch archive version {version!r}")
    return ZipContainer(prefix, records, byteorder)


def _check_tiling(file: _Bounded, spans: list[_Span], cd_offset: int) -> None:
    """Records must fill the data area exactly: from byte 0 to the central directory, each one
    followed only by its data descriptor, so no reader walking local headers finds anything else."""
    spans.sort(key=lambda span: span.start)
    if spans[0].start != 0:
        raise UnsafeFileError("has bytes before its first zip record; refusing it")
    for span, next_start, next_name in zip(spans, [s.start for s in spans[1:]] + [cd_offset],
                                           [s.name for s in spans[1:]] + [None]):
        gap = next_start - span.data_end
        if gap < 0:
            raise UnsafeFileError(f"zip records {span.name!r} and {next_name!r} overlap; refusing the archive")
        if gap and not (span.descriptor and gap <= 24 and
                        _is_descriptor(file.read(span.data_end, gap), span.crc32, span.size)):
            raise UnsafeFileError(f"has {gap} unaccounted bytes after zip record {span.name!r}; {_AMBIGUOUS}")


def _is_descriptor(raw: bytes, crc32: int, size: int) -> bool:
    """Whether ``raw`` is exactly the data descriptor of a record with this CRC and size."""
    body = raw[4:] if raw[:4] == b"PK\x07\x08" else raw
    if len(body) == 12:
        return struct.unpack("<III", body) == (crc32, size, size)
    if len(body) == 20:
        return struct.unpack("<IQQ", body) == (crc32, size, size)
    return False


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
