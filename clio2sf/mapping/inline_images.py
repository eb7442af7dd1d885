"""Find inline images in HTML documents/notes and turn them into extra Salesforce Files."""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any


@dataclass(frozen=True)
class InlineImage:
    """One ``<img>``: embedded bytes (data: URI) or a URL the loader must download."""

    source_system_id: str
    filename: str
    content_type: str
    data: bytes | None
    url: str | None
    sha256: str | None


class _ImgParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.srcs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "img":
            a = dict(attrs)
            if a.get("src"):
                self.srcs.append((a["src"], a.get("alt")))


def find_inline_images(html_text: str, parent_source_id: str) -> Iterator[InlineImage]:
    """Yield the images of ``html_text``; ids are ``<parent>#img-<n>`` (stable across runs)."""
    parser = _ImgParser()
    parser.feed(html_text)
    for n, (src, _alt) in enumerate(parser.srcs, start=1):
        sid = f"{parent_source_id}#img-{n}"
        if src.startswith("data:"):
            header, _, payload = src.partition(",")
            ctype = header[5:].split(";")[0] or "application/octet-stream"
            if ";base64" not in header:
                continue  # inline SVG text and the like: left in the HTML
            try:
                data = base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError):
                continue
            ext = mimetypes.guess_extension(ctype) or ".bin"
            yield InlineImage(sid, f"image-{n}{ext}", ctype, data, None, hashlib.sha256(data).hexdigest())
        elif src.startswith(("http://", "https://")):
            name = src.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or f"image-{n}"
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            yield InlineImage(sid, name, ctype, None, src, None)


def inline_image_rows(image: InlineImage, links: dict[str, str], created: str | None = None) -> Iterator[dict[str, Any]]:
    """ContentVersion (+ ContentDocumentLink per entry of ``links``, e.g. ``{"Case": "matter-7"}``)."""
    row: dict[str, Any] = {"Clio_Id__c": image.source_system_id, "Clio_Created_Date__c": created, "Title": image.filename,
                           "PathOnClient": image.filename, "Clio_Content_Type__c": image.content_type}
    env: dict[str, Any] = {"sobject": "ContentVersion", "source_system_id": image.source_system_id,
                           "external_id_field": "Clio_Id__c", "natural_key": None, "row": row}
    if image.data is not None:
        row["VersionData"] = base64.b64encode(image.data).decode("ascii")  # small: the loader decodes it
    else:
        env["blob"] = {"url": image.url, "path": None, "sha256": None, "size": None}  # to download into staging first
    yield env
    for sobject, ext_id in links.items():
        yield {"sobject": "ContentDocumentLink", "source_system_id": f"{image.source_system_id}#{ext_id}",
               "external_id_field": None, "natural_key": ["ContentDocumentId", "LinkedEntityId"],
               "row": {"ContentVersion.Clio_Id__c": image.source_system_id, f"{sobject}:LinkedEntity.Clio_Id__c": ext_id,
                       "ShareType": "V", "Visibility": "AllUsers"}}
