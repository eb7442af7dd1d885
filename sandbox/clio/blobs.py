"""Document bytes, generated on demand from (seed, document id, version) instead of stored.

The generator only needs the *kind* and *size* recorded on the version; the same inputs always
give the same bytes, so a million-document firm stays small on disk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import random
import struct
import zipfile
import zlib

#: kind -> (extension, content type)
KINDS: dict[str, tuple[str, str]] = {
    "pdf": ("pdf", "application/pdf"),
    "docx": ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    "txt": ("txt", "text/plain"),
    "html": ("html", "text/html"),
    "png": ("png", "image/png"),
}

_WORDS = (
    "agreement party hereby witness counsel motion court exhibit clause settlement deposition "
    "plaintiff defendant estate trust lease closing schedule invoice retainer discovery"
).split()


def png_bytes(width: int, height: int, rng: random.Random) -> bytes:
    """A valid RGB PNG of the given size with seeded pixels."""
    raw = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(_WORDS)
        words.append(w)
        n += len(w) + 1
    return (" ".join(words) + ".")[:size]


def _fill(prefix: bytes, suffix: bytes, rng: random.Random, size: int) -> bytes:
    body = _text(rng, max(0, size - len(prefix) - len(suffix))).encode()
    return (prefix + body + suffix)[:size] if size < len(prefix) + len(suffix) else prefix + body + suffix


def _png_exact(rng: random.Random, size: int) -> bytes:
    side = max(1, min(128, int((size / 4) ** 0.5)))
    img = png_bytes(side, side, rng)
    while len(img) + 12 > size and side > 1:
        side = max(1, side // 2)
        img = png_bytes(side, side, rng)
    pad = size - len(img) - 12
    if pad < 0:
        return img
    text = b"Comment\x00" + b"x" * max(0, pad - 8)
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    return img[:-12] + chunk + img[-12:]


def _docx_exact(rng: random.Random, size: int) -> bytes:
    names = ("[Content_Types].xml", "word/document.xml")
    head = '<?xml version="1.0"?><Types/>'
    overhead = sum(30 + 46 + 2 * len(n) for n in names) + 22 + len(head)
    wrap = ("<w:document><w:body>", "</w:body></w:document>")
    body = _text(rng, max(0, size - overhead - len(wrap[0]) - len(wrap[1])))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, content in zip(names, (head, wrap[0] + body + wrap[1]), strict=True):
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), content)
    return buf.getvalue()


def generate(seed: int, doc_id: int, version: int, kind: str, size: int, ref_doc: int | None = None) -> bytes:
    """Bytes of one document version, exactly ``size`` long for sizes the kind can reach."""
    if size <= 0:
        return b""
    rng = random.Random(f"{seed}:{doc_id}:{version}")
    if kind == "png":
        return _png_exact(rng, size)
    if kind == "pdf":
        return _fill(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% ", b"\ntrailer << /Root 1 0 R >>\n%%EOF\n", rng, size)
    if kind == "docx":
        return _docx_exact(rng, size)
    if kind == "html":
        img = base64.b64encode(png_bytes(8, 8, rng)).decode()
        extra = (
            f'<p><a href="/api/v4/documents/{ref_doc}/download.json">See related document</a></p>'
            if ref_doc
            else ""
        )
        prefix = f"<html><body><h1>Memo {doc_id}</h1><p>".encode()
        suffix = f'</p><img src="data:image/png;base64,{img}" alt="logo"/>{extra}</body></html>'.encode()
        return _fill(prefix, suffix, rng, size)
    return _text(rng, size).encode()


def sign(secret: str, doc_id: int, version_id: int, expires: int) -> str:
    msg = f"{doc_id}:{version_id}:{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def verify(secret: str, doc_id: int, version_id: int, expires: int, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, doc_id, version_id, expires), signature)
