"""A real S3-protocol server process on 127.0.0.1 for tests and benchmarks: moto's standalone server (honours
conditional writes) or ``rclone serve s3`` (cheap ranged reads), both installed from PyPI as dev dependencies."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Test credentials the servers accept; not secrets.
ACCESS_KEY = "sdhub-test-access"
SECRET_KEY = "sdhub-test-secret-key-0123456789"
#: The part size tests use (the server is started accepting parts this small).
TEST_PART_SIZE = 64 << 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """``with S3Server("moto") as server:`` a running server at ``server.url`` with ``server.bucket`` created."""

    def __init__(self, kind: str = "moto", *, root: Path | None = None, bucket: str = "library",
                 min_part_size: int = 64 << 10) -> None:
        self.kind, self.root, self.bucket, self.min_part_size = kind, root, bucket, min_part_size
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def _command(self) -> tuple[list[str], dict[str, str]]:
        env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(self.min_part_size)}
        if self.kind == "moto":
            server = Path(sys.executable).with_name("moto_server")
            return [str(server), "-H", "127.0.0.1", "-p", str(self.port)], env
        rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
        assert rclone and self.root is not None, "rclone serve s3 needs the rclone binary and a root folder"
        (self.root / self.bucket).mkdir(parents=True, exist_ok=True)
        return [rclone, "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}",
                "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--config", "/dev/null"], env

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def __enter__(self) -> "S3Server":
        command, env = self._command()
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {self.kind} S3 server did not start") from None
                time.sleep(0.1)
        if self.kind == "moto":
            self.client().create_bucket(Bucket=self.bucket)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)


class SlowProxy:
    """A TCP relay on 127.0.0.1 in front of a server that passes at most ``rate`` bytes a second each way, so a
    test can stop a transfer half-way; ``bytes_up``/``bytes_down`` count what went through."""

    def __init__(self, target_port: int, rate: int) -> None:
        import threading

        self.target_port, self.rate = target_port, rate
        self.bytes_up = self.bytes_down = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while True:
                data = source.recv(16384)
                if not data:
                    break
                sink.sendall(data)
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting and cut every open connection: what is still in flight never arrives."""
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
