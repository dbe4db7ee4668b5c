"""Headless Chromium (Debian's ``chromium`` package) for page checks: the DOM it builds and a
screenshot, and a small PNG reader to judge the screenshot (no imaging library needed)."""

from __future__ import annotations

import asyncio
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

#: Where CI installs it (.ci/run) and where a developer gets it: apt-get install chromium.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1280, 900)


def _argv(user_dir: str) -> list[str]:
    assert CHROMIUM is not None
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_dir}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ]


async def _run(argv: list[str], within: float) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"chromium did not finish within {within:.0f}s") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out


async def dump_dom(url: str, within: float = 60.0) -> str:
    """The DOM of ``url`` as Chromium serialises it after loading."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as user_dir:
        return (await _run([*_argv(user_dir), "--dump-dom", url], within)).decode()


async def screenshot(url: str, png: Path, within: float = 60.0) -> bytes:
    """A screenshot of ``url`` at :data:`WINDOW`, written to ``png``; its bytes."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as user_dir:
        await _run([*_argv(user_dir), f"--screenshot={png}", url], within)
    return _read(png)


def _read(path: Path) -> bytes:
    return path.read_bytes()


@dataclass(frozen=True, slots=True)
class Image:
    """A decoded 8-bit PNG: size and grey levels (one byte per pixel)."""

    width: int
    height: int
    grey: bytes

    def variance(self) -> float:
        """The variance of the grey levels (0 for a blank page)."""
        n = len(self.grey)
        mean = sum(self.grey) / n
        return sum((g - mean) ** 2 for g in self.grey) / n


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def read_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    grey = bytearray()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                line[x] = (line[x] + _paeth(a, b, c)) & 0xFF
        prev = line
        grey.extend(
            (line[i] * 3 + line[i + 1] * 6 + line[i + 2]) // 10 for i in range(0, stride, bpp)
        )
    return Image(width, height, bytes(grey))
