"""Every file hash the Stable Diffusion world uses, computed in one sequential read.

One reader fills a few large reused buffers. The schemes (SHA-256 on the CPU's SHA
instructions, the AutoV3/addnet SHA-256, BLAKE3, CRC32, and the per-tensor digests behind the
component hashes) are spread over lanes, at most one per core, balanced by their cost per byte;
the reader runs one lane itself. All of them release the GIL on large buffers, so on two cores
the two SHA-256s of a .safetensors run side by side while the file is read exactly once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

import blake3
import xxhash
from isal import isal_zlib

from sdhub.buffer_pool import BufferPool, Worker
from sdhub.errors import BadInputError, SdhubError, StandInFileError, UsageError
from sdhub.formats.regular_file import open_regular_file
from sdhub.formats.safetensors_file import looks_like_safetensors
from sdhub.progress import NULL_PROGRESS, Progress, QuietProgress, check_cancelled

if TYPE_CHECKING:
    from sdhub.formats import ModelFile

#: A1111's legacy model hash reads 64 KiB at offset 1 MiB.
LEGACY_HASH_OFFSET = 0x100000
LEGACY_HASH_LENGTH = 0x10000
#: Civitai computes AutoV1 only for files of at least 2 MiB.
CIVITAI_AUTOV1_MIN_SIZE = 0x200000

# Two 4 MiB buffers: the reader fills one while the other lane hashes the other, and both stay in
# the CPU's cache. Measured on a 2-core VM: 4 buffers (16 MiB) made a 7.7 GB SHA-256 25% slower
# and all hashes 8% slower; smaller buffers cost more per-chunk hand-offs than they saved.
_BUFFER_SIZE = 4 * 1024 * 1024
_BUFFER_COUNT = 2

# CPU time per byte relative to OpenSSL's SHA-256 on SHA instructions. Measured on an Intel VM:
# SHA-256 1.7 GB/s, BLAKE3 6.3, XXH3 24, CRC32 with carry-less multiply 25; on an AMD EPYC VM, from
# the page cache: SHA-256 1.45 GB/s, BLAKE3 2.3, XXH3 14, CRC32 10. Only the
# ratios matter (these are between the two machines'): they decide which schemes share a core.
SHA256_COST = 1.0
BLAKE3_COST = 0.4
CRC32_COST = 0.1
XXH3_COST = 0.08
# read() copies every byte out of the page cache into a buffer the schemes then read from the CPU's cache:
# 0.25 of a SHA-256 on an Intel VM, 0.14 on an AMD EPYC one (4.3 GB in 0.41 s).
_READ_COST = 0.2

Feed = Callable[[memoryview, int], None]


@dataclass(frozen=True)
class FileHashes:
    """The hashes of one file, lowercase hex (Civitai shows the same values in upper case).

    ``legacy_model_hash`` is A1111's 8-hex "model hash" (SHA-256 of 64 KiB at 1 MiB, which is
    ``e3b0c442`` for any file under 1 MiB); ``autov1`` is the same value as Civitai reports it,
    ``None`` for files under 2 MiB. ``addnet_hash`` is kohya's SHA-256 of a safetensors file's
    bytes after the header and ``autov3`` its first 12 hex (A1111's LoRA short hash); both are
    ``None`` for other files and where they were not asked for (see ``hash_model``). ``crc32`` is in Civitai's byte order (the CRC's four bytes
    little-endian), ``crc32_zlib`` the usual ``%08x`` of ``zlib.crc32``.
    """

    path: str
    size: int
    sha256: str
    autov2: str
    legacy_model_hash: str
    autov1: str | None
    addnet_hash: str | None
    autov3: str | None
    crc32: str
    crc32_zlib: str
    blake3: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def civitai(self) -> dict[str, str]:
        """The hashes under the names and in the case Civitai's API uses (absent ones left out)."""
        values = {
            "SHA256": self.sha256, "AutoV1": self.autov1, "AutoV2": self.autov2,
            "AutoV3": self.autov3, "CRC32": self.crc32, "BLAKE3": self.blake3,
        }
        return {name: value.upper() for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class _Consumer:
    """One scheme's chunk handler and its CPU cost per byte (see ``SHA256_COST``)."""

    feed: Feed
    cost: float


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_lanes(costs: list[float], cores: int, read_cost: float = 0.0) -> list[list[int]]:
    """Group consumers (by index) into at most ``cores`` lanes of similar cost; lane 0 is the reader's.

    Costliest first, each to the least loaded lane: on two cores a .safetensors gets
    [read, addnet SHA-256, ...] and [SHA-256, BLAKE3, ...], the two SHA-256s on separate cores.
    """
    lanes: list[list[int]] = [[] for _ in range(max(1, min(cores, len(costs) + 1)))]
    loads = [read_cost] + [0.0] * (len(lanes) - 1)
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        lane = min(range(len(lanes)), key=loads.__getitem__)
        lanes[lane].append(index)
        loads[lane] += costs[index]
    return lanes


def _feed_all(feeds: list[Feed], view: memoryview, position: int) -> None:
    for feed in feeds:
        feed(view, position)


def _open_for_hashing(file_path: Path) -> BinaryIO:
    if file_path.is_dir():
        raise UsageError(f"{file_path}: not a file (hash works on model files, not folders)")
    return open_regular_file(file_path)


def _read_once(handle: BinaryIO, file_path: Path, consumers: list[_Consumer], progress: Progress) -> int:
    """Read ``handle`` sequentially once, giving every chunk to every consumer."""
    check_cancelled(progress)  # a small file is read without reports
    size = os.fstat(handle.fileno()).st_size
    if size <= _BUFFER_SIZE:
        return _read_small(handle, file_path, size, consumers)
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)  # more read-ahead from disk
    slots = BufferPool(_BUFFER_COUNT, _BUFFER_SIZE)
    lanes = plan_lanes([c.cost for c in consumers], _usable_cores(), read_cost=_READ_COST)
    inline = [consumers[i].feed for i in lanes[0]]
    lane_feeds = [[consumers[i].feed for i in lane] for lane in lanes[1:]]
    workers = [Worker("sdhub-hash") for _ in lane_feeds]
    for worker in workers:
        worker.start()
    task = progress.task(f"Hashing {file_path.name}", total=size, unit="bytes")
    position = 0
    try:
        while not any(worker.error for worker in workers):
            slot = slots.take()
            buffer = slots.buffer(slot)
            count = handle.readinto(buffer)
            if not count:
                slots.release(slot)
                break
            view = memoryview(buffer)[:count]
            slots.hold(slot, len(workers))
            for worker, feeds in zip(workers, lane_feeds):
                worker.submit(functools.partial(_feed_all, feeds, view, position),
                              functools.partial(slots.release, slot))
            _feed_all(inline, view, position)
            slots.release(slot)  # the reader's own hold: the lanes keep theirs until they are done
            position += count
            task.advance(count)
    finally:
        for worker in workers:
            worker.stop()
        task.finish()
    for worker in workers:
        if worker.error is not None:
            raise worker.error
    if position != size:
        raise BadInputError(f"{file_path}: changed size while being hashed ({size} then {position} bytes)")
    return size


def _read_small(handle: BinaryIO, file_path: Path, size: int, consumers: list[_Consumer]) -> int:
    """One buffer, no threads: for the many small files (embeddings, LoRAs) a catalog scan meets."""
    data = handle.read(size + 1) or b""
    while len(data) < size + 1 and (more := handle.read(size + 1 - len(data))):
        data += more
    if len(data) != size:
        raise BadInputError(f"{file_path}: changed size while being hashed ({size} then {len(data)} bytes)")
    view = memoryview(data)
    for consumer in consumers:
        consumer.feed(view, 0)
    return size


def sha256_file(path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS) -> str:
    """The SHA-256 of a file alone (the catalog's identity), lowercase hex."""
    file_path = Path(path)
    sha256 = hashlib.sha256()
    with _open_for_hashing(file_path) as handle:
        _read_once(handle, file_path, [_Consumer(lambda view, position: sha256.update(view), SHA256_COST)],
                   progress)
    return sha256.hexdigest()


def hash_file(path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS, *,
              addnet: bool = True) -> FileHashes:
    """Compute SHA-256, AutoV2, legacy/AutoV1, CRC32, BLAKE3 and (``addnet``) AutoV3 in one read of ``path``."""
    return _hash_file(Path(path), [], progress, addnet=addnet)


def _hash_file(file_path: Path, extra: list[_Consumer], progress: Progress, *, addnet: bool) -> FileHashes:
    """``hash_file``, with ``extra`` consumers fed the same read."""
    with _open_for_hashing(file_path) as handle:
        size = os.fstat(handle.fileno()).st_size
        first_bytes = os.pread(handle.fileno(), 9, 0)
        data_offset = None
        if addnet and looks_like_safetensors(first_bytes, size):
            data_offset = 8 + struct.unpack("<Q", first_bytes[:8])[0]

        sha256 = hashlib.sha256()
        addnet = hashlib.sha256() if data_offset is not None else None
        # Beside two SHA-256s (a .safetensors), BLAKE3 splits each chunk over two threads so that the
        # lane holding it with one of them does not finish last (a 4.3 GB checkpoint: 4.1 s instead of
        # 4.4 on 2 AMD cores); beside one, the SHA-256 lane is the long one and is better left alone.
        split = data_offset is not None and size > _BUFFER_SIZE and _usable_cores() > 1
        blake = blake3.blake3(max_threads=2 if split else 1)
        crc = 0
        legacy = bytearray()

        def feed_sha256(view: memoryview, position: int) -> None:
            sha256.update(view)
            _collect_legacy_window(legacy, view, position)

        def feed_crc(view: memoryview, position: int) -> None:
            nonlocal crc
            crc = isal_zlib.crc32(view, crc)

        def feed_addnet(view: memoryview, position: int) -> None:
            skip = data_offset - position
            if skip < len(view):
                addnet.update(view[max(skip, 0):])

        consumers = [_Consumer(feed_sha256, SHA256_COST),
                     _Consumer(lambda view, position: blake.update(view), BLAKE3_COST),
                     _Consumer(feed_crc, CRC32_COST), *extra]
        if addnet is not None:
            consumers.append(_Consumer(feed_addnet, SHA256_COST))
        _read_once(handle, file_path, consumers, progress)

    sha_hex = sha256.hexdigest()
    legacy_hex = hashlib.sha256(legacy).hexdigest()[:8]
    addnet_hex = addnet.hexdigest() if addnet is not None else None
    return FileHashes(
        path=str(file_path),
        size=size,
        sha256=sha_hex,
        autov2=sha_hex[:10],
        legacy_model_hash=legacy_hex,
        autov1=legacy_hex if size >= CIVITAI_AUTOV1_MIN_SIZE else None,
        addnet_hash=addnet_hex,
        autov3=addnet_hex[:12] if addnet_hex is not None else None,
        crc32=crc.to_bytes(4, "little").hex(),
        crc32_zlib=f"{crc:08x}",
        blake3=blake.hexdigest(),
    )


def _collect_legacy_window(window: bytearray, view: memoryview, position: int) -> None:
    """Append to ``window`` the part of this chunk inside A1111's legacy-hash window."""
    start = max(LEGACY_HASH_OFFSET, position)
    end = min(LEGACY_HASH_OFFSET + LEGACY_HASH_LENGTH, position + len(view))
    if start < end:
        window += view[start - position:end - position]


class _TensorDigests:
    """XXH3-128 of each component tensor's little-endian bytes, taken as the file's read passes them.

    A tensor stored as one contiguous run is digested from the shared read; a strided view or a
    big-endian legacy tensor (rare) is loaded on its own afterwards.
    """

    def __init__(self, model: ModelFile, keys: list[str]) -> None:
        self._model = model
        self._later: list[str] = []
        spans: list[tuple[int, int, str]] = []
        for key in keys:
            raw = model.raw_source(key)
            if raw is None:
                self._later.append(key)
            else:
                spans.append((raw.offset, raw.offset + raw.nbytes, key))
        self._spans = sorted(spans)
        self._next = 0
        self._open: list[tuple[int, int, str, xxhash.xxh3_128]] = []
        self.digests: dict[str, str] = {}
        self.consumer = _Consumer(self._feed, XXH3_COST)

    def _feed(self, view: memoryview, position: int) -> None:
        chunk_end = position + len(view)
        while self._next < len(self._spans) and self._spans[self._next][0] < chunk_end:
            start, end, key = self._spans[self._next]
            self._open.append((start, end, key, xxhash.xxh3_128()))
            self._next += 1
        still_open = []
        for start, end, key, digest in self._open:
            first, last = max(start, position), min(end, chunk_end)
            if first < last:
                digest.update(view[first - position:last - position])
            if end <= chunk_end:
                self.digests[key] = digest.hexdigest()
            else:
                still_open.append((start, end, key, digest))
        self._open = still_open

    def finish(self) -> dict[str, str]:
        """Every tensor's digest, loading the ones the read could not cover (torch only for those)."""
        for key in self._later + [key for _, _, key in self._spans if key not in self.digests]:
            import torch

            tensor = self._model.load(key).contiguous().reshape(-1)
            self.digests[key] = xxhash.xxh3_128(memoryview(tensor.view(torch.uint8).numpy())).hexdigest()
        return self.digests


class _ComponentHasher:
    """The component hashes of an open model, its tensor digests fed by a shared read.

    Each component's hash is the SHA-256 over its tensors sorted by their name without the
    container prefix, one line ``name, dtype, shape, XXH3-128 of the raw little-endian bytes``
    per tensor; CLIP ``position_ids`` (a buffer merges often break) are left out.
    """

    def __init__(self, model: ModelFile) -> None:
        from sdhub.models import components as comp

        groups = comp.group_by_component(model.tensors)
        self._model = model
        self._entries: dict[str, list[tuple[str, str]]] = {}
        for component in (c for c in comp.INFERENCE_COMPONENTS if c in groups):
            canonical = sorted((comp.canonical_key(k), k) for k in groups[component])
            self._entries[component] = [(c, k) for c, k in canonical if not c.endswith("position_ids")]
        self._tensors = _TensorDigests(model, [k for entries in self._entries.values() for _, k in entries])
        self.consumer = self._tensors.consumer

    def finish(self) -> dict[str, str]:
        digests = self._tensors.finish()
        hashes: dict[str, str] = {}
        for component, entries in self._entries.items():
            digest = hashlib.sha256()
            for canonical, key in entries:
                info = self._model.tensors[key]
                digest.update(f"{canonical}\0{info.dtype_name}\0{list(info.shape)}\0{digests[key]}\n".encode())
            hashes[component] = digest.hexdigest()
        return hashes


def hash_components(path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS) -> dict[str, str]:
    """Content hashes of a model's UNet, VAE and text encoders that ignore container and key order.

    A VAE baked into a checkpoint and the same VAE saved alone, or a .ckpt and its .safetensors
    conversion, hash the same (see ``_ComponentHasher`` for the exact scheme).
    """
    from sdhub.formats import open_model

    file_path = Path(path)
    with open_model(file_path) as model, _open_for_hashing(file_path) as handle:
        hasher = _ComponentHasher(model)
        _read_once(handle, file_path, [hasher.consumer], progress)
        return hasher.finish()


#: Kinds whose tools name a .safetensors by its AutoV3/addnet hash (A1111's "Lora hashes").
ADDNET_KINDS = frozenset({"lora"})


@dataclass(frozen=True)
class ModelHashes:
    """``sdhub hash`` for one file: the file hashes and, for checkpoints and VAEs, component hashes."""

    file: FileHashes
    kind: str | None
    components: dict[str, str] | None
    #: Why the file was not read as a model (only its file hashes stand), or None.
    not_a_model: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {**self.file.to_dict(), "civitai": self.file.civitai(), "kind": self.kind,
                "components": self.components, "not_a_model": self.not_a_model}


def hash_model(path: str | os.PathLike[str], *, components: bool = True, all_hashes: bool = False,
               progress: Progress = NULL_PROGRESS) -> ModelHashes:
    """The file hashes of ``path`` and, for a checkpoint or VAE, its component hashes, in one read.

    AutoV3/addnet, a second SHA-256 over nearly every byte, is taken for LoRAs (A1111 names them
    by it) and, with ``all_hashes``, for any .safetensors; a checkpoint is known by its SHA-256
    everywhere, and leaving it out keeps ``hash`` near the speed of one SHA-256 on two cores.
    A file that stands in for a model (empty, a Git LFS pointer, a web page) is refused with
    ``StandInFileError``: its hashes would be taken for the model's.
    """
    from sdhub.formats import open_model
    from sdhub.models.detect import detect

    file_path = Path(path)
    _open_for_hashing(file_path).close()  # a missing file or a folder gets its own message first
    try:
        model = open_model(file_path)
    except StandInFileError:
        raise
    except SdhubError as refused:  # not a model: its file hashes still stand, and the reason is kept
        return ModelHashes(hash_file(file_path, progress, addnet=all_hashes), None, None,
                           not_a_model=refused.message)
    with model:
        try:
            kind = detect(model.tensors, model.metadata).kind
        except SdhubError:
            kind = None
        hasher = _ComponentHasher(model) if components and kind in ("checkpoint", "vae") else None
        file_hashes = _hash_file(file_path, [hasher.consumer] if hasher else [], progress,
                                 addnet=all_hashes or kind in ADDNET_KINDS)
        return ModelHashes(file_hashes, kind, hasher.finish() if hasher else None)


#: A piece fed more than this far ahead of the hashed position, and no larger than
#: ``_KEEP_AHEAD_PIECE``, is kept (up to ``_KEEP_AHEAD_TOTAL`` in all) rather than reading up to it.
_KEEP_AHEAD_GAP = 4 << 20
_KEEP_AHEAD_PIECE = 1 << 20
_KEEP_AHEAD_TOTAL = 64 << 20


class BackgroundSha256:
    """A source file's SHA-256, taken from the bytes a writer reads from it on the way through.

    ``write_safetensors(..., source_digest=...)`` feeds it, from its hashing thread, what it
    reads of the file; ``result()`` reads whatever was not fed (the gaps between tensors, parts
    left out or read out of order), so the value is the whole file's SHA-256 either way and the
    file is read once. ``known`` skips the work when the caller (the catalog) already has the
    value; reading stops when ``progress`` (the caller's) is cancelled.
    """

    def __init__(self, path: str | os.PathLike[str], known: str | None = None,
                 progress: Progress = NULL_PROGRESS) -> None:
        self._value = known
        self._progress = QuietProgress(progress)
        self._sha = hashlib.sha256()
        self._position = 0
        self._handle: BinaryIO | None = None
        # Small pieces fed far ahead of the hashed position (a checkpoint's int64 tensors come
        # first in the output but last in the file), kept until the hashing gets there.
        self._ahead: dict[int, bytes] = {}
        self._ahead_bytes = 0
        if known is None:
            self._handle = _open_for_hashing(Path(path))
            status = os.fstat(self._handle.fileno())
            self._identity = (status.st_dev, status.st_ino)
            self._size = status.st_size

    def wanted(self) -> bool:
        """Whether the value is still to be computed (not given as ``known``)."""
        return self._value is None

    def same_file(self, fd: int) -> bool:
        """Whether ``fd`` is open on the file this digest is of."""
        status = os.fstat(fd)
        return self._handle is not None and (status.st_dev, status.st_ino) == self._identity

    def feed(self, offset: int, data: memoryview) -> None:
        """Take the file's bytes at ``offset``; what lies between the last fed byte and them is read."""
        if self._handle is None:
            return
        if (offset - self._position > _KEEP_AHEAD_GAP and len(data) <= _KEEP_AHEAD_PIECE
                and self._ahead_bytes + len(data) <= _KEEP_AHEAD_TOTAL):
            self._ahead[offset] = bytes(data)  # reading the gap now would read what is still to come
            self._ahead_bytes += len(data)
            return
        if offset > self._position:
            self._read_to(offset)
        self._take(offset, data)

    def _take(self, offset: int, data: memoryview | bytes) -> None:
        skip = self._position - offset
        if skip < len(data):
            self._sha.update(data[skip:] if skip > 0 else data)
            self._position = offset + len(data)

    def _read_to(self, end: int) -> None:
        """Hash up to ``end``, from the pieces kept ahead where there are any, else read."""
        assert self._handle is not None
        while self._position < end:
            kept = min((start for start in self._ahead if start < end), default=end)
            if kept <= self._position:
                data = self._ahead.pop(kept)
                self._ahead_bytes -= len(data)
                self._take(kept, data)
                continue
            view = memoryview(bytearray(min(_BUFFER_SIZE, kept - self._position)))
            while self._position < kept:
                check_cancelled(self._progress)
                got = os.preadv(self._handle.fileno(), [view[:kept - self._position]], self._position)
                if not got:
                    raise BadInputError(f"{self._handle.name}: changed size while being read")
                self._sha.update(view[:got])
                self._position += got

    def result(self) -> str:
        """The hex digest, reading what was not fed; raises ``Interrupted`` if cancelled meanwhile."""
        if self._value is None:
            assert self._handle is not None
            with self._handle:
                self._read_to(self._size)
                self._value = self._sha.hexdigest()
        return self._value
