"""Data Docs that render offline, and their publication under the task's artifact directory.

Great Expectations 1.x Data Docs load Bootstrap, jQuery, vega and Font Awesome from public CDNs
and the logo from S3; the package itself ships only its own stylesheet, fonts and images. Behind a
firewall the pages render as unstyled text and their inline scripts fail. :func:`make_offline`
removes every CDN ``<link>``/``<script>`` and instead loads two small files shipped with this
package (``static/mlpipe-offline.css`` — the Bootstrap subset the pages use — and
``static/mlpipe-offline.js`` — stand-ins for the jQuery calls and for ``vegaEmbed``, which draws
the histograms as plain bar charts). Remote logos point to the copies GE ships.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

STATIC = Path(__file__).with_name("static")
OFFLINE_FILES = ("mlpipe-offline.css", "mlpipe-offline.js")

_CDN_LINK = re.compile(r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>\s*", re.IGNORECASE)
_CDN_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>\s*", re.IGNORECASE)
_REMOTE_IMG = re.compile(
    r"https://great-expectations-web-assets\.s3[^\"']*?/([A-Za-z0-9_.-]+?)(\?[^\"']*)?(?=[\"'])"
)
_HEAD_END = re.compile(r"</head>", re.IGNORECASE)


def _rewrite(html: str, prefix: str, images: set[str]) -> str:
    html = _CDN_LINK.sub("", html)
    html = _CDN_SCRIPT.sub("", html)

    def local_image(match: re.Match[str]) -> str:
        name = match.group(1)
        # GE ships logo-long.png but not e.g. full_logo_dark.png: use the logo it has.
        return f"{prefix}static/images/{name if name in images else 'logo-long.png'}"

    html = _REMOTE_IMG.sub(local_image, html)
    tags = (
        f'<link rel="stylesheet" href="{prefix}static/styles/{OFFLINE_FILES[0]}">\n'
        f'<script src="{prefix}static/{OFFLINE_FILES[1]}"></script>\n'
    )
    # The shims must exist before the pages' inline scripts run, so they go at the end of <head>.
    return _HEAD_END.sub(lambda _m: tags + "</head>", html, count=1)


def make_offline(site_dir: str | os.PathLike[str]) -> int:
    """Rewrite every HTML page of a Data Docs site to load nothing from the network.

    :returns: the number of pages rewritten.
    """
    root = Path(site_dir)
    (root / "static" / "styles").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STATIC / OFFLINE_FILES[0], root / "static" / "styles" / OFFLINE_FILES[0])
    shutil.copyfile(STATIC / OFFLINE_FILES[1], root / "static" / OFFLINE_FILES[1])
    images = {p.name for p in (root / "static" / "images").glob("*")}
    count = 0
    for page in root.rglob("*.html"):
        depth = len(page.relative_to(root).parts) - 1
        text = page.read_text(encoding="utf-8")
        new = _rewrite(text, "../" * depth, images)
        if new != text:
            page.write_text(new, encoding="utf-8")
            count += 1
    return count


def external_references(site_dir: str | os.PathLike[str]) -> list[str]:
    """Network URLs a browser would *load* (stylesheets, scripts, images) from the site's pages."""
    found: list[str] = []
    pattern = re.compile(r"<(?:link|script|img)\b[^>]*\b(?:href|src)=\"(https?://[^\"]+)\"", re.IGNORECASE)
    for page in Path(site_dir).rglob("*.html"):
        found.extend(pattern.findall(page.read_text(encoding="utf-8")))
    return found


def publish(local_dir: str | os.PathLike[str], target: ObjectStoragePath) -> None:
    """Copy a locally built site to ``target`` (object storage); a no-op when it is the same place."""
    from airflow_mlpipe.core.storage import local_path

    here = Path(local_dir).resolve()
    dest = local_path(target)
    if dest is not None and Path(dest).resolve() == here:
        return
    for file in here.rglob("*"):
        if file.is_file():
            out = target / file.relative_to(here).as_posix()
            if dest is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
            with file.open("rb") as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)
