"""Image files as a user meets them: phone photos (EXIF), 32-bit PNGs, broken files, huge files, strips.

Every error is a ValueError naming the file and raised when the image is opened, not at first use.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from sam_widgets._images import as_rgb_uint8
from sam_widgets.session import Session


class _NoModel:
    """A predictor that must never be reached in these tests."""

    def set_image(self, image, image_format="RGB"):  # pragma: no cover - not reached
        raise AssertionError("no model run expected")

    def predict(self, **kwargs):  # pragma: no cover - not reached
        raise AssertionError("no model run expected")


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header says width x height and whose pixel data is a few bytes: any decode fails."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def photo(tmp_path, rgb_image):
    """A JPEG stored in sensor orientation 90x120 with EXIF orientation 6 (rotate 90 to view)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(rgb_image).save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied_on_open(photo):
    with Image.open(photo) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert expected.shape == (120, 90, 3)  # upright: taller than wide
    assert np.array_equal(as_rgb_uint8(photo), expected)
    s = Session(photo, _NoModel())
    assert (s.width, s.height) == (90, 120)
    assert np.array_equal(s.image, expected)


def test_mode_i_outside_16_bits_is_refused(tmp_path):
    arr = np.full((20, 30), 70_000, dtype=np.int32)
    im = Image.fromarray(arr, mode="I")
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        as_rgb_uint8(im)
    arr[:] = -5
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        as_rgb_uint8(Image.fromarray(arr, mode="I"))
    ok = np.full((20, 30), 65535, dtype=np.int32)
    assert (as_rgb_uint8(Image.fromarray(ok, mode="I")) == 255).all()


def test_truncated_file_is_a_value_error_naming_it_at_open(tmp_path, rgb_image):
    path = tmp_path / "cut.png"
    Image.fromarray(rgb_image).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.png.*truncated or corrupt"):
        as_rgb_uint8(path)
    with pytest.raises(ValueError, match="cut.png.*truncated or corrupt"):
        Session(path, _NoModel())  # at open, not at the first click


def test_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ValueError, match="notes.png.*not an image"):
        Session(path, _NoModel())


def test_huge_image_refused_from_its_header_before_decoding(tmp_path):
    # 20000x20000 is over PIL's own bomb limit: a ValueError of ours, not DecompressionBombError.
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 20_000, 20_000)
    for call in (as_rgb_uint8, lambda p: Session(p, _NoModel())):
        with pytest.raises(ValueError, match="bomb.png.*over the 100 MP limit"):
            call(bomb)
    # 12000x9000 (108 MP) is under PIL's limit: its bytes are garbage, so only a header check
    # can give the size message (decoding would fail as corrupt).
    big = tmp_path / "big.png"
    _png_header_only(big, 12_000, 9_000)
    with pytest.raises(ValueError, match="big.png.*108 MP"):
        as_rgb_uint8(big)


def test_thin_strip_is_refused_at_open(tmp_path):
    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros((8, 4200, 3), np.uint8)).save(path)
    for call in (as_rgb_uint8, lambda p: Session(p, _NoModel())):
        with pytest.raises(ValueError, match="strip.png.*4200x8.*strip"):
            call(path)
    with pytest.raises(ValueError, match="4200x8.*strip"):
        as_rgb_uint8(np.zeros((8, 4200, 3), np.uint8))
