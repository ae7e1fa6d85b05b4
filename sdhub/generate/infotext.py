"""A1111 "parameters" infotext: write it, parse it back, and store it in a PNG.

Layout: the prompt (any number of lines), ``Negative prompt: ...`` (omitted when empty), then one
line of ``Key: value`` pairs joined by ", " in A1111's key order. A value containing ``,``, ``:``
or a newline is written as a JSON string. Parsing follows A1111's ``parse_generation_parameters``:
the last line holds the parameters only if at least three ``Key: value`` pairs are found in it.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sdhub.errors import BadInputError

# A1111 create_infotext order; keys not listed keep their insertion order after Tiling, then Version, User.
KEY_ORDER = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration", "Size",
    "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE", "Variation seed",
    "Variation seed strength", "Seed resize from", "Denoising strength", "Conditional mask weight", "Clip skip",
    "ENSD", "Token merging ratio", "Token merging ratio hr", "Init image hash", "RNG", "NGMS", "Tiling",
)
TRAILING_KEYS = ("Version", "User")
NEGATIVE_PREFIX = "Negative prompt:"
PNG_KEY = "parameters"

# A1111's re_param, less its leading \s* (which changes no group) and with keys of at most 100 characters
# (A1111's longest is under 40): unbounded, a long line without ":" costs time quadratic in its length.
_PARAM = re.compile(r"(\w[\w \-/]{1,100}):\s*(\"(?:\\.|[^\\\"])+\"|[^,]*)(?:,|$)")
#: Keys whose value Civitai and its A1111 extension write as bare JSON (``Hashes: {"model": ...}``),
#: commas and all; A1111's regex would cut it at the first comma, so it is read as one JSON value.
RAW_JSON_KEYS = ("Hashes", "Civitai resources", "Civitai metadata")
#: A longer last line is read as prompt text: A1111 writes a few KB of parameters, and reading a
#: hostile file's megabytes as parameters would take seconds per megabyte.
MAX_PARAMETER_LINE = 256 << 10
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")


def quote(value: Any) -> str:
    """A1111's ``quote``: JSON-encode a value that contains ``,``, ``:`` or a newline."""
    text = format_value(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_value(value: Any) -> str:
    """A parameter value as A1111 prints it; a whole float prints as an integer (``CFG scale: 7``)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def unquote(text: str) -> str:
    """Undo ``quote``: a JSON string is decoded, anything else is returned as it is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return text
    return decoded if isinstance(decoded, str) else text


def order_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` sorted into A1111's key order (unknown keys keep their order before Version/User)."""
    known = [key for key in KEY_ORDER if key in params]
    extra = [key for key in params if key not in KEY_ORDER and key not in TRAILING_KEYS]
    trailing = [key for key in TRAILING_KEYS if key in params]
    return {key: params[key] for key in known + extra + trailing}


def hashes_value(hashes: Mapping[str, str]) -> str | None:
    """``Lora hashes``/``TI hashes`` value: ``name: hash, ...`` with ``:`` and ``,`` removed from names."""
    if not hashes:
        return None
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {value}" for name, value in hashes.items())


def parse_hashes(value: str) -> dict[str, str]:
    """The reverse of ``hashes_value``: ``"a: 0123, b: 4567"`` -> ``{"a": "0123", "b": "4567"}``."""
    result = {}
    for entry in value.split(","):
        name, _, digest = entry.strip().partition(":")
        if name and digest:
            result[name.strip()] = digest.strip()
    return result


def quote_raw_json(line: str) -> str:
    """``line`` with each bare JSON value of a ``RAW_JSON_KEYS`` key written as A1111 quotes a value,
    so the parameter regex reads it whole and ``unquote`` gives back the JSON text."""
    decoder = json.JSONDecoder()
    for key in RAW_JSON_KEYS:
        pieces, done = [], 0
        for match in itertools.islice(re.finditer(rf"(?:^|, ){re.escape(key)}: *(?=[{{\[])", line), 64):
            if match.start() < done:
                continue  # inside the JSON value just read
            try:
                _, end = decoder.raw_decode(line, match.end())
            except (ValueError, RecursionError):
                continue
            pieces += [line[done:match.end()], json.dumps(line[match.end():end], ensure_ascii=False)]
            done = end
        line = "".join(pieces) + line[done:] if pieces else line
    return line


@dataclass
class Infotext:
    """A prompt, its negative prompt and the parameter line, values as strings in file order."""

    prompt: str
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, prompt: str, negative_prompt: str = "", params: Mapping[str, Any] | None = None) -> "Infotext":
        """Build from typed values: ``None`` values are dropped, keys put in A1111's order."""
        ordered = order_params({k: v for k, v in (params or {}).items() if v is not None})
        return cls(prompt, negative_prompt, {key: format_value(value) for key, value in ordered.items()})

    def to_text(self) -> str:
        """The infotext exactly as A1111 writes it."""
        line = ", ".join(key if key == value else f"{key}: {quote(value)}" for key, value in self.params.items())
        negative = f"\n{NEGATIVE_PREFIX} {self.negative_prompt}" if self.negative_prompt else ""
        return f"{self.prompt}{negative}\n{line}".strip()

    @classmethod
    def from_text(cls, text: str) -> "Infotext":
        """Parse infotext as A1111's PNG Info does (prompt lines are stripped, quoted values decoded)."""
        *lines, last = text.strip().split("\n")
        last = quote_raw_json(last) if len(last) <= MAX_PARAMETER_LINE else last
        if len(last) > MAX_PARAMETER_LINE or len(_PARAM.findall(last)) < 3:
            lines.append(last)
            last = ""
        prompt_lines: list[str] = []
        negative_lines: list[str] = []
        in_negative = False
        for line in lines:
            line = line.strip()
            if line.startswith(NEGATIVE_PREFIX):
                in_negative = True
                line = line[len(NEGATIVE_PREFIX):].strip()
            (negative_lines if in_negative else prompt_lines).append(line)
        params = {key: unquote(value) for key, value in _PARAM.findall(last)}
        return cls("\n".join(prompt_lines), "\n".join(negative_lines), params)

    def generation_fields(self) -> dict[str, str]:
        """A1111's ``parse_generation_parameters`` dict: Prompt, Negative prompt, ``WxH`` split into -1/-2."""
        fields = {"Prompt": self.prompt, "Negative prompt": self.negative_prompt}
        for key, value in self.params.items():
            size = _IMAGE_SIZE.match(value)
            if size:
                fields[f"{key}-1"], fields[f"{key}-2"] = size.group(1), size.group(2)
            else:
                fields[key] = value
        fields.setdefault("Clip skip", "1")
        fields.setdefault("RNG", "GPU")
        fields.setdefault("Schedule type", "Automatic")
        return fields

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "params": dict(self.params)}


_VERSION_PREFIX = re.compile(r"([^-]+-[^-]+)-.*")


def parse_version(text: str | None):
    """An infotext `Version` (`v1.7.0-225-gabcdef` read as `v1.7.0-225`), or None when it does not parse."""
    from packaging.version import InvalidVersion, Version

    if not text:
        return None
    match = _VERSION_PREFIX.match(text)  # v1.7.0-225-gabcdef -> v1.7.0-225
    try:
        return Version(match.group(1) if match else text)
    except InvalidVersion:
        return None


def backcompat_fields(fields: dict[str, str]) -> dict[str, Any]:
    """A1111's switches for reproducing an image made by an older version (needs a parseable ``Version``).

    ``fields`` is ``Infotext.generation_fields()``; the result adds "Old prompt editing timelines",
    "Pad conds v0", "Downcast alphas_cumprod" and "Refiner switch by sampling steps" where they apply.
    """
    from packaging.version import Version

    result: dict[str, Any] = dict(fields)
    version = parse_version(fields.get("Version"))
    if version is None:
        return result
    if version < Version("1.6.0") and "[" in fields.get("Prompt", ""):
        result["Old prompt editing timelines"] = True
    if version < Version("1.6.0") and fields.get("Sampler", "") in ("DDIM", "PLMS"):
        result["Pad conds v0"] = True
    if version < Version("1.7.0-225"):
        result["Downcast alphas_cumprod"] = True
    if version < Version("1.8.0") and fields.get("Refiner"):
        result["Refiner switch by sampling steps"] = True
    return result


def png_bytes_with_parameters(image: Any, text: str) -> bytes:
    """A PIL image encoded as PNG with ``text`` in the ``parameters`` chunk (iTXt when not Latin-1)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PNG_KEY, text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png_with_parameters(image: Any, path: Path, text: str) -> Path:
    """Write ``image`` to ``path`` as a PNG carrying ``text`` (temporary name, fsync, rename)."""
    from sdhub.catalog.sidecars import write_file_atomic

    path = Path(path)
    write_file_atomic(path, png_bytes_with_parameters(image, text))
    return path


def read_png_parameters(path: Path) -> str | None:
    """The ``parameters`` text of a PNG, or None when it has none."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.info.get(PNG_KEY)
    except (UnidentifiedImageError, OSError) as error:
        raise BadInputError(f"{path} is not a readable image: {error}") from None
