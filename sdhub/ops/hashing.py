"""Every file hash the Stable Diffusion world uses, computed in one sequential read.

One reader thread fills large reused buffers; SHA-256 (OpenSSL, SHA-NI), the AutoV3/addnet
SHA-256, BLAKE3 and CRC32 each run in their own worker thread fed the same buffers. All of them
release the GIL on large buffers, so the schemes share the machine's cores while the file is
read exactly once.
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import blake3
from isal import isal_zlib

from sdhub.errors import BadInputError, NotFoundError, UsageError
from sdhub.formats.safetensors_file import looks_like_safetensors
from sdhub.progress import NULL_PROGRESS, Progress

#: A1111's legacy model hash reads 64 KiB at offset 1 MiB.
LEGACY_HASH_OFFSET = 0x100000
LEGACY_HASH_LENGTH = 0x10000
#: Civitai computes AutoV1 only for files of at least 2 MiB.
CIVITAI_AUTOV1_MIN_SIZE = 0x200000

# A few 4 MiB buffers stay in the CPU caches between the read and the hashers: measured ~35%
# faster than 16 MiB buffers, which the hashers had to fetch back from RAM.
_BUFFER_SIZE = 4 * 1024 * 1024
_BUFFER_COUNT = 3


@dataclass(frozen=True)
class FileHashes:
    """The hashes of one file, lowercase hex (Civitai shows the same values in upper case).

    ``legacy_model_hash`` is A1111's 8-hex "model hash" (SHA-256 of 64 KiB at 1 MiB, which is
    ``e3b0c442`` for any file under 1 MiB); ``autov1`` is the same value as Civitai reports it,
    ``None`` for files under 2 MiB. ``addnet_hash`` is kohya's SHA-256 of a safetensors file's
    bytes after the header and ``autov3`` its first 12 hex (A1111's LoRA short hash); both are
    ``None`` for other files. ``crc32`` is in Civitai's byte order (the CRC's four bytes
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


class _Worker(threading.Thread):
    """Feeds each buffer it is given to ``consume`` and signals when done with it."""

    def __init__(self, consume: Callable[[memoryview, int], None], release: Callable[[int], None]) -> None:
        super().__init__(daemon=True)
        self._consume = consume
        self._release = release
        self.inbox: queue.SimpleQueue[tuple[int, memoryview, int] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None

    def run(self) -> None:
        while (item := self.inbox.get()) is not None:
            slot, view, position = item
            try:
                if self.error is None:
                    self._consume(view, position)
            except BaseException as error:  # reported by the reader after join
                self.error = error
            finally:
                self._release(slot)


class _Slots:
    """A fixed pool of read buffers, each returned once every worker has finished with it."""

    def __init__(self, count: int, size: int, consumers: int) -> None:
        self.buffers = [bytearray(size) for _ in range(count)]
        self._consumers = consumers
        self._pending = [0] * count
        self._lock = threading.Lock()
        self.free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(count):
            self.free.put(slot)

    def hand_out(self, slot: int) -> None:
        self._pending[slot] = self._consumers

    def release(self, slot: int) -> None:
        with self._lock:
            self._pending[slot] -= 1
            done = self._pending[slot] == 0
        if done:
            self.free.put(slot)


def _open_for_hashing(file_path: Path) -> BinaryIO:
    if not file_path.exists():
        raise NotFoundError(f"{file_path}: no such file")
    if not file_path.is_file():
        raise UsageError(f"{file_path}: not a file (hash works on model files, not folders)")
    try:
        return open(file_path, "rb", buffering=0)
    except OSError as error:
        raise BadInputError(f"{file_path}: cannot be read ({error.strerror})") from error


def _read_once(handle: BinaryIO, file_path: Path, consumers: list[Callable[[memoryview, int], None]],
               progress: Progress) -> int:
    """Read ``handle`` sequentially once, giving every chunk to every consumer in its own thread."""
    size = os.fstat(handle.fileno()).st_size
    if size <= _BUFFER_SIZE:
        return _read_small(handle, file_path, size, consumers)
    slots = _Slots(_BUFFER_COUNT, _BUFFER_SIZE, len(consumers))
    workers = [_Worker(consume, slots.release) for consume in consumers]
    for worker in workers:
        worker.start()
    task = progress.task(f"Hashing {file_path.name}", total=size, unit="bytes")
    position = 0
    try:
        while not any(worker.error for worker in workers):
            slot = slots.free.get()
            buffer = slots.buffers[slot]
            count = handle.readinto(buffer)
            if not count:
                slots.free.put(slot)
                break
            view = memoryview(buffer)[:count]
            slots.hand_out(slot)
            for worker in workers:
                worker.inbox.put((slot, view, position))
            position += count
            task.advance(count)
    finally:
        for worker in workers:
            worker.inbox.put(None)
        for worker in workers:
            worker.join()
        task.finish()
    for worker in workers:
        if worker.error is not None:
            raise worker.error
    if position != size:
        raise BadInputError(f"{file_path}: changed size while being hashed ({size} then {position} bytes)")
    return size


def _read_small(handle: BinaryIO, file_path: Path, size: int,
                consumers: list[Callable[[memoryview, int], None]]) -> int:
    """One buffer, no threads: for the many small files (embeddings, LoRAs) a catalog scan meets."""
    data = handle.read(size + 1) or b""
    while len(data) < size + 1 and (more := handle.read(size + 1 - len(data))):
        data += more
    if len(data) != size:
        raise BadInputError(f"{file_path}: changed size while being hashed ({size} then {len(data)} bytes)")
    view = memoryview(data)
    for consume in consumers:
        consume(view, 0)
    return size


def sha256_file(path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS) -> str:
    """The SHA-256 of a file alone (the catalog's identity), lowercase hex."""
    file_path = Path(path)
    sha256 = hashlib.sha256()
    with _open_for_hashing(file_path) as handle:
        _read_once(handle, file_path, [lambda view, position: sha256.update(view)], progress)
    return sha256.hexdigest()


def hash_file(path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS) -> FileHashes:
    """Compute SHA-256, AutoV2, legacy/AutoV1, AutoV3/addnet, CRC32 and BLAKE3 in one read of ``path``."""
    file_path = Path(path)
    with _open_for_hashing(file_path) as handle:
        size = os.fstat(handle.fileno()).st_size
        first_bytes = os.pread(handle.fileno(), 9, 0)
        data_offset = 8 + struct.unpack("<Q", first_bytes[:8])[0] if looks_like_safetensors(first_bytes, size) else None

        sha256 = hashlib.sha256()
        addnet = hashlib.sha256() if data_offset is not None else None
        blake = blake3.blake3()
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

        consumers = [feed_sha256, lambda view, position: blake.update(view), feed_crc]
        if addnet is not None:
            consumers.append(feed_addnet)
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


def hash_components(path: str | os.PathLike[str], progress: Progress = NULL_PROGRESS) -> dict[str, str]:
    """Content hashes of a model's UNet, VAE and text encoders that ignore container and key order.

    Each is the SHA-256 over the component's tensors sorted by their name without the container
    prefix, each contributing ``name, dtype, shape`` and its raw little-endian bytes; CLIP
    ``position_ids`` (a buffer merges often break) are left out. A VAE baked into a checkpoint
    and the same VAE saved alone, or a .ckpt and its .safetensors conversion, hash the same.
    """
    import torch

    from sdhub.formats import open_model
    from sdhub.models import components as comp

    hashes: dict[str, str] = {}
    with open_model(path) as model:
        groups = comp.group_by_component(model.tensors)
        wanted = [c for c in comp.INFERENCE_COMPONENTS if c in groups]
        total = sum(model.tensors[k].nbytes for c in wanted for k in groups[c])
        task = progress.task(f"Hashing components of {Path(path).name}", total=total, unit="bytes")
        for component in wanted:
            digest = hashlib.sha256()
            for canonical, key in sorted((comp.canonical_key(k), k) for k in groups[component]):
                if canonical.endswith("position_ids"):
                    continue
                info = model.tensors[key]
                digest.update(f"{canonical}\0{info.dtype_name}\0{list(info.shape)}\n".encode())
                tensor = model.load(key).contiguous().reshape(-1)
                digest.update(memoryview(tensor.view(torch.uint8).numpy()))
                task.advance(info.nbytes)
            hashes[component] = digest.hexdigest()
        task.finish()
    return hashes


@dataclass(frozen=True)
class ModelHashes:
    """``sdhub hash`` for one file: the file hashes and, for checkpoints and VAEs, component hashes."""

    file: FileHashes
    kind: str | None
    components: dict[str, str] | None

    def to_dict(self) -> dict[str, object]:
        return {**self.file.to_dict(), "civitai": self.file.civitai(), "kind": self.kind,
                "components": self.components}


def hash_model(path: str | os.PathLike[str], *, components: bool = True,
               progress: Progress = NULL_PROGRESS) -> ModelHashes:
    """All file hashes of ``path`` and, when it is a checkpoint or VAE sdhub can read, its component hashes."""
    from sdhub.errors import SdhubError
    from sdhub.formats import open_model
    from sdhub.models.detect import detect

    file_hashes = hash_file(path, progress)
    try:
        with open_model(path) as model:
            kind = detect(model.tensors, model.metadata).kind
    except SdhubError:
        kind = None  # not a model file sdhub can read: the file hashes still stand
    wanted = components and kind in ("checkpoint", "vae")
    return ModelHashes(file_hashes, kind, hash_components(path, progress) if wanted else None)


class BackgroundSha256:
    """A file's SHA-256 computed by a daemon thread while the caller writes its output.

    ``known`` skips the work when the caller (the catalog) already has the value.
    """

    def __init__(self, path: str | os.PathLike[str], known: str | None = None) -> None:
        self._value = known
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if known is None:
            self._thread = threading.Thread(target=self._run, args=(Path(path),), name="sha256", daemon=True)
            self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._value = sha256_file(path)
        except BaseException as error:  # handed to the caller by result()
            self._error = error

    def result(self) -> str:
        """The hex digest; re-raises whatever stopped the hashing."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value
