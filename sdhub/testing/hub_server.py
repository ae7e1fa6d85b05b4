"""An imitation of the Hugging Face Hub on 127.0.0.1 that the real ``huggingface_hub`` downloads from.

It answers what ``hf_hub_download`` and ``snapshot_download`` ask (``research/apis.md`` part D):
``/api/models/{repo}/revision/{rev}``, ``/api/models/{repo}/tree/{rev}``, and HEAD/GET
``/{repo}/resolve/{rev}/{path}`` (datasets and Spaces under ``/api/datasets/``, ``/datasets/{repo}/...``: add
them as ``datasets/ORG/REPO``) with ``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``,
``X-Linked-Size``; large (LFS) files redirect to a separate CDN host serving bytes with ``Range``.
Errors carry ``X-Error-Code`` (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from sdhub.testing.imitation_http import ImitationHandler, ImitationServers

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".gguf", ".msgpack")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubRepo:
    """A model repo with one commit: its files, and who may read them when it is gated."""

    repo_id: str
    files: dict[str, bytes]
    revision: str = "main"
    gated: bool = False
    granted_tokens: set[str] = field(default_factory=set)

    @property
    def commit(self) -> str:
        digest = hashlib.sha1(self.repo_id.encode())
        for name in sorted(self.files):
            digest.update(name.encode() + hashlib.sha256(self.files[name]).digest())
        return digest.hexdigest()

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)


class HubServer(ImitationServers):
    """The imitation Hub and its CDN; use as a context manager and point ``HF_ENDPOINT`` at ``url``."""

    # The Hub client (httpx) sends header names in lower case.
    lower_case_header_names = True

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host, {"hub": _HubHandler, "cdn": _CdnHandler})
        self.repos: dict[str, HubRepo] = {}

    @property
    def url(self) -> str:
        return self.server_url("hub")

    @property
    def cdn_url(self) -> str:
        return self.server_url("cdn")

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, gated: bool = False,
                 granted_tokens: set[str] | None = None) -> HubRepo:
        repo = HubRepo(repo_id, dict(files), gated=gated, granted_tokens=set(granted_tokens or ()))
        self.repos[repo_id] = repo
        return repo

    def blob(self, sha256: str) -> tuple[HubRepo, str] | None:
        for repo in self.repos.values():
            for path, data in repo.files.items():
                if hashlib.sha256(data).hexdigest() == sha256:
                    return repo, path
        return None


class _Base(ImitationHandler[HubServer]):
    def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "X-Request-Id": "imitation", **(extra or {})}
        self._json(status, {"error": message}, headers)

    def _serve_bytes(self, data: bytes, headers: dict[str, str]) -> None:
        span = self._send_range_head(len(data), headers)
        if span is not None and self.command != "HEAD":
            self.wfile.write(data[span[0]:span[1]])


class _HubHandler(_Base):
    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        path = urlsplit(self.path).path
        api = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?", path)
        if api:
            kind, repo_id = api.group(1), api.group(2)
            self._api(repo_id if kind == "models" else f"{kind}/{repo_id}", api.group(3), unquote(api.group(4)))
            return
        resolve = re.fullmatch(r"/((?:datasets/|spaces/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            self._resolve(resolve.group(1), unquote(resolve.group(2)), unquote(resolve.group(3)))
            return
        self._send(404, b'{"error":"Not Found"}')

    def _repo(self, repo_id: str, revision: str, *, files: bool) -> HubRepo | None:
        repo = self.owner.repos.get(repo_id)
        token = self.headers.get("Authorization", "")[7:].strip() or None
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if revision not in (repo.revision, repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        if files and repo.gated and token not in repo.granted_tokens:
            message = (f"Access to repo {repo_id} is restricted and you are not in the authorized list. "
                       f"Visit {self.owner.url}/{repo_id} to ask for access.")
            self._error(403 if token else 401, "GatedRepo", message)
            return None
        return repo

    def _api(self, repo_id: str, kind: str, revision: str) -> None:
        repo = self._repo(repo_id, revision, files=False)
        if repo is None:
            return
        if kind == "revision":
            public_id = repo_id.split("/", 1)[1] if repo_id.startswith(("datasets/", "spaces/")) else repo_id
            body = {"_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": public_id, "modelId": public_id,
                    "author": repo_id.split("/")[0], "sha": repo.commit, "lastModified": "2024-01-01T00:00:00.000Z",
                    "private": False, "disabled": False, "gated": "manual" if repo.gated else False,
                    "tags": ["diffusers"], "library_name": "diffusers",
                    "siblings": [{"rfilename": name} for name in sorted(repo.files)],
                    "createdAt": "2024-01-01T00:00:00.000Z"}
            self._json(200, body)
            return
        entries: list[dict[str, Any]] = []
        folders = sorted({"/".join(name.split("/")[:i]) for name in repo.files
                          for i in range(1, name.count("/") + 1)})
        for folder in folders:
            entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0,
                            "path": folder})
        for name in sorted(repo.files):
            data = repo.files[name]
            entry: dict[str, Any] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
            if repo.is_lfs(name):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        self._json(200, entries)

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_id, revision, files=True)
        if repo is None:
            return
        data = repo.files.get(path)
        if data is None:
            self._error(404, "EntryNotFound", f"{path} does not exist on \"{revision}\"",
                        {"X-Repo-Commit": repo.commit})
            return
        if repo.is_lfs(path):
            sha256 = hashlib.sha256(data).hexdigest()
            self._send(302, headers={
                "Location": f"{self.owner.cdn_url}/repos/{sha256}?X-Amz-Signature=imitation",
                "X-Repo-Commit": repo.commit, "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data)),
                "ETag": f'"{git_blob_sha1(data)}"',
            })
            return
        self._serve_bytes(data, {"X-Repo-Commit": repo.commit, "ETag": f'"{git_blob_sha1(data)}"'})


class _CdnHandler(_Base):
    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        match = re.fullmatch(r"/repos/([0-9a-f]{64})", urlsplit(self.path).path)
        found = self.owner.blob(match.group(1)) if match else None
        if found is None:
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            return
        repo, path = found
        name = path.rsplit("/", 1)[-1]
        self._serve_bytes(repo.files[path], {"Content-Disposition": f'inline; filename="{name}"',
                                             "ETag": f'"{match.group(1)}"'})  # type: ignore[union-attr]
