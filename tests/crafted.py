"""Inputs the tests craft byte by byte (the suite's modules import it: tests/conftest.py puts this
folder on the path)."""

from __future__ import annotations

import struct
import zlib


def png_header_only(width: int, height: int, color_type: int = 0) -> bytes:
    """A PNG that declares width x height (grayscale; color type 6: RGBA) and holds no pixels: Pillow
    reads its size and mode from the header, so a bound is checked before anything is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
