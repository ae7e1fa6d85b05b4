"""Whatever a user pastes is recognised as the model it names, or refused with the accepted forms."""

from __future__ import annotations

import pytest

from sdhub.errors import UsageError
from sdhub.sources.refs import CivitaiRef, HubRef, UrlRef, parse_ref


@pytest.mark.parametrize("text, expected", [
    ("https://civitai.com/models/4201", CivitaiRef(model_id=4201)),
    ("https://civitai.com/models/4201/realistic-vision?modelVersionId=130072",
     CivitaiRef(model_id=4201, version_id=130072)),
    ("civitai.com/models/4201/x", CivitaiRef(model_id=4201)),
    ("https://civitai.com/model-versions/130072", CivitaiRef(version_id=130072)),
    ("https://civitai.com/api/download/models/130072", CivitaiRef(version_id=130072)),
    ("https://civitai.com/api/download/models/130072?type=Pruned%20Model&format=SafeTensor&size=pruned&fp=fp16",
     CivitaiRef(version_id=130072, file_type="Pruned Model", format="SafeTensor", size="pruned", fp="fp16")),
    ("urn:air:sd1:checkpoint:civitai:4201@130072", CivitaiRef(model_id=4201, version_id=130072)),
    ("air:sdxl:lora:civitai:706978@1050496", CivitaiRef(model_id=706978, version_id=1050496)),
    ("sdxl:checkpoint:civitai:1@2", CivitaiRef(model_id=1, version_id=2)),
    ("civitai:3036@9857", CivitaiRef(model_id=3036, version_id=9857)),
    ("urn:air:sd1:checkpoint:civitai:4201", CivitaiRef(model_id=4201)),
    ("urn:air:sd1:checkpoint:civitai:4201@130072+5149", CivitaiRef(model_id=4201, version_id=130072, file_id=5149)),
])
def test_civitai_references(text: str, expected: CivitaiRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("https://huggingface.co/stabilityai/sd-vae-ft-mse-original/blob/main/vae-ft-mse-840000-ema-pruned.safetensors",
     HubRef("stabilityai/sd-vae-ft-mse-original", "vae-ft-mse-840000-ema-pruned.safetensors", "main")),
    ("https://huggingface.co/org/repo/resolve/v1.0/unet/diffusion_pytorch_model.safetensors?download=true",
     HubRef("org/repo", "unet/diffusion_pytorch_model.safetensors", "v1.0")),
    ("https://huggingface.co/org/repo/blob/refs%2Fpr%2F3/model.ckpt", HubRef("org/repo", "model.ckpt", "refs/pr/3")),
    ("https://huggingface.co/runwayml/stable-diffusion-v1-5", HubRef("runwayml/stable-diffusion-v1-5")),
    ("https://huggingface.co/org/repo/tree/fp16", HubRef("org/repo", None, "fp16")),
    ("hf:org/repo/sub/model.safetensors", HubRef("org/repo", "sub/model.safetensors")),
    ("hf:org/repo/model.safetensors@abc123", HubRef("org/repo", "model.safetensors", "abc123")),
    ("hf:org/repo", HubRef("org/repo")),
    ("hf:org/repo@fp16", HubRef("org/repo", None, "fp16")),
    ("org/repo/model.safetensors", HubRef("org/repo", "model.safetensors")),
    ("org/repo", HubRef("org/repo")),
])
def test_hugging_face_references(text: str, expected: HubRef) -> None:
    assert parse_ref(text) == expected


def test_a_whole_repo_is_marked_as_such() -> None:
    assert parse_ref("hf:org/repo").whole_repo
    assert not parse_ref("hf:org/repo/a.safetensors").whole_repo


def test_plain_urls_are_plain_downloads() -> None:
    assert parse_ref("https://example.org/files/model.safetensors") == UrlRef(
        "https://example.org/files/model.safetensors")
    assert parse_ref("http://10.0.0.2:8080/x.ckpt") == UrlRef("http://10.0.0.2:8080/x.ckpt")


def test_the_configured_civitai_site_is_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDHUB_CIVITAI_URL", "http://127.0.0.1:8123")
    assert parse_ref("http://127.0.0.1:8123/models/12?modelVersionId=34") == CivitaiRef(model_id=12, version_id=34)
    # Another port on the same host is not the Civitai site.
    assert parse_ref("http://127.0.0.1:9999/models/12") == UrlRef("http://127.0.0.1:9999/models/12")


def test_the_configured_hub_endpoint_is_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:7000/")
    assert parse_ref("http://127.0.0.1:7000/org/repo/blob/main/a.safetensors") == HubRef("org/repo", "a.safetensors")


@pytest.mark.parametrize("text", [
    "", "   ", "model.safetensors", "ftp://example.org/model.ckpt", "file:///etc/passwd",
    "https://civitai.com/images/123", "https://civitai.com/models/abc", "urn:air:sd1:checkpoint:civitai:x@1",
    "urn:air:sd1:checkpoint:orchestrator:1@2", "hf:org", "hf:org/../etc/passwd", "org/repo/../../x",
    "https://huggingface.co/datasets/org", "hf:datasets/org", "https:///nohost",
])
def test_bad_references_list_the_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_ref(text)
    message = str(caught.value)
    assert "accepted forms" in message
    assert "urn:air:" in message and "hf:ORG/REPO" in message and "civitai.com/models" in message
    assert caught.value.exit_code == 2
