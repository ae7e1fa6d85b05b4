"""What to say before a Civitai download starts: a version nobody can download (archived, taken down,
generation-only) or that needs early access is refused with its own message before any request for
the file; a file Civitai's virus scan flagged is refused, one its pickle scan flagged or has not
scanned yet is downloaded with a warning."""

from __future__ import annotations

from typing import Any

from sdhub.catalog.civitai_record import file_scan, version_status
from sdhub.errors import AuthError, NotFoundError, UnsafeFileError
from sdhub.text import printable


def _what(model: dict[str, Any], version: dict[str, Any]) -> str:
    summary = version.get("model") if isinstance(version.get("model"), dict) else {}
    name = model.get("name") or summary.get("name")
    label = f"{printable(name)} {printable(version.get('name') or '')}".strip() if name else ""
    ids = f"model {model.get('id') or version.get('modelId')}, version {version.get('id')}"
    return f"{label} ({ids})" if label else ids


def refuse_unavailable(model: dict[str, Any], version: dict[str, Any]) -> None:
    """Raise when Civitai hands the version's files to nobody: taken down, archived, generation-only."""
    status = version_status(model, version)
    what = _what(model, version)
    if status.taken_down:
        raise NotFoundError(f"Civitai took down {what}: its files are no longer available; nothing was downloaded")
    if status.archived:
        raise NotFoundError(f"Civitai archived {what}: its creator no longer offers its files for download; "
                            "nothing was downloaded")
    if status.generation_only:
        raise NotFoundError(f"Civitai offers {what} for generation on its site only: it has no downloadable files")


def check_before_download(model: dict[str, Any], version: dict[str, Any], file: dict[str, Any], *,
                          has_token: bool, token_help: str) -> list[str]:
    """Refuse what will not download (see ``refuse_unavailable``), early access without a token, a file
    Civitai's virus scan flagged; return warnings for the rest of what Civitai's scans say."""
    refuse_unavailable(model, version)
    status = version_status(model, version)
    what = _what(model, version)
    if status.early_access and not has_token:
        until = f" until {status.early_access_ends_at}" if status.early_access_ends_at else ""
        raise AuthError(f"Civitai: {what} is in Early Access{until}: buy early access on its page and give sdhub "
                        f"that account's API token ({token_help}), or wait until it ends; nothing was downloaded")
    scan = file_scan(file)
    name = printable(file.get("name") or "the file")
    if "virus" in scan.flagged:
        said = f": {printable(scan.virus_message)}" if scan.virus_message else ""
        raise UnsafeFileError(f"Civitai's virus scan flagged {name} of {what}{said}; refusing to download it")
    warnings = []
    if "pickle" in scan.flagged:
        warnings.append(f"Civitai's pickle scan flagged {name} (it imports code when loaded); sdhub converts "
                        "pickles without running them and refuses one that would run code")
    if scan.unscanned:
        warnings.append(f"Civitai has not finished scanning {name} (pickle scan: {scan.pickle or 'none'}, virus "
                        f"scan: {scan.virus or 'none'}): it vouches for nothing yet")
    if status.early_access:
        warnings.append(f"{what} is in Early Access until {status.early_access_ends_at or 'a date Civitai did not give'}: "
                        "the download works only if your account bought it")
    return warnings
