"""Frame writers: raw ``.npy`` exactly, pictures min-max normalised per frame or on a fixed scale, video, and atomic outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from firmware_io.frame_files import FrameSink, parse_display_scale, write_frames, write_png

# A known frame: min -1 and max 3, so a value v becomes round((v + 1) * 255 / 4).
KNOWN = np.array([[-1.0, 0.0, 1.0], [3.0, 3.0, 1.0]], dtype=np.float32)
KNOWN_U8 = np.array([[0, 64, 128], [255, 255, 128]], dtype=np.uint8)


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L" and image.format == "PNG"
        return np.asarray(image)


def test_npy_round_trip_is_exact(tmp_path):
    frames = np.random.default_rng(0).standard_normal((5, 7, 9)).astype(np.float32) * 1e3
    frames[2, 3, 4] = np.float32(1.0e-38)  # a subnormal value survives as it is
    out = write_frames(tmp_path / "frames.npy", frames)
    assert out == tmp_path / "frames.npy"
    back = np.load(out)
    assert back.dtype == np.float32 and back.shape == frames.shape
    np.testing.assert_array_equal(back, frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.npy"]  # no temporary left


def test_png_is_min_max_normalised_per_frame(tmp_path):
    write_frames(tmp_path / "one.png", KNOWN[None])
    np.testing.assert_array_equal(png_pixels(tmp_path / "one.png"), KNOWN_U8)
    write_png(tmp_path / "constant.png", np.full((2, 3), 7.5, dtype=np.float32))
    np.testing.assert_array_equal(png_pixels(tmp_path / "constant.png"), np.zeros((2, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["constant.png", "one.png"]


def test_png_folder_normalises_each_frame_on_its_own(tmp_path):
    frames = np.stack([KNOWN, KNOWN * 100 + 5, np.zeros_like(KNOWN)])  # same picture at another scale; flat
    write_frames(tmp_path / "pictures", frames)
    names = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert names == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    np.testing.assert_array_equal(png_pixels(tmp_path / "pictures" / names[0]), KNOWN_U8)
    np.testing.assert_array_equal(png_pixels(tmp_path / "pictures" / names[1]), KNOWN_U8)
    np.testing.assert_array_equal(png_pixels(tmp_path / "pictures" / names[2]), np.zeros((2, 3), np.uint8))


def test_output_types_are_checked_before_writing(tmp_path):
    with pytest.raises(ValueError, match="single PNG but there are 2 frames"):
        write_frames(tmp_path / "one.png", np.stack([KNOWN, KNOWN]))
    with pytest.raises(ValueError, match="unknown output type '.tiff'"):
        write_frames(tmp_path / "x.tiff", KNOWN[None])
    with FrameSink(tmp_path / "two.npy", 2, KNOWN.shape) as sink:
        sink.append(KNOWN)
        sink.append(KNOWN)
        with pytest.raises(ValueError, match="more than the 2 frames announced"):
            sink.append(KNOWN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.npy"]


def test_mp4_holds_every_frame(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="writing video needs the 'video' extra (imageio-ffmpeg)")
    import imageio.v2 as imageio

    frames = np.zeros((6, 33, 47), dtype=np.float32)  # odd sizes: padded to even for yuv420p
    frames[:, :, 24:] = np.arange(6, dtype=np.float32)[:, None, None] + 1.0  # right half bright, left dark
    out = write_frames(tmp_path / "clip.mp4", frames, fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    reader = imageio.get_reader(out)
    try:
        decoded = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    assert len(decoded) == 6
    for picture in decoded:
        assert picture.shape[:2] == (34, 48)
        grey = picture[..., 0] if picture.ndim == 3 else picture
        assert grey[:, :20].mean() < 30 and grey[:, 28:].mean() > 225  # lossy, but the halves stay apart


def test_failed_npy_write_leaves_nothing(tmp_path):
    out_dir = tmp_path / "out"
    with pytest.raises(ValueError):
        with FrameSink(out_dir / "frames.npy", 3, (4, 5)) as sink:
            sink.append(np.ones((4, 5), np.float32))
            sink.append(np.ones((7, 7), np.float32))  # wrong shape: fails in the middle of the file
    assert list(out_dir.iterdir()) == []


def test_failure_between_frames_leaves_no_video_and_no_temporary(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="writing video needs the 'video' extra (imageio-ffmpeg)")
    out_dir = tmp_path / "out"
    with pytest.raises(RuntimeError, match="reconstruction failed"):
        with FrameSink(out_dir / "clip.mp4", 3, (16, 16)) as sink:
            sink.append(np.ones((16, 16), np.float32))
            raise RuntimeError("reconstruction failed")
    assert list(out_dir.iterdir()) == []


def test_failed_png_write_leaves_no_temporary(tmp_path):
    out_dir = tmp_path / "pictures"
    with pytest.raises((ValueError, TypeError)):
        with FrameSink(out_dir, 2, (2, 3)) as sink:
            sink.append(KNOWN)
            sink.append(np.zeros((2, 3, 4), np.float32))  # not a 2-D frame: PIL refuses it
    assert sorted(p.name for p in out_dir.iterdir()) == ["frame_000000.png"]


def test_a_fixed_scale_maps_value_over_scale_to_white_for_every_frame(tmp_path):
    frames = np.stack([KNOWN, KNOWN / 2])  # the same picture, half as bright
    write_frames(tmp_path / "fixed", frames, scale=2.0)
    first, second = (png_pixels(tmp_path / "fixed" / f"frame_{i:06d}.png") for i in range(2))
    np.testing.assert_array_equal(first, [[0, 0, 128], [255, 255, 128]])  # v / 2 * 255 rounded, clipped: -1 black
    np.testing.assert_array_equal(second, [[0, 0, 64], [191, 191, 64]])  # half as bright stays half as bright
    write_frames(tmp_path / "auto", frames)  # the default: each frame normalised on its own, so both look alike
    np.testing.assert_array_equal(png_pixels(tmp_path / "auto" / "frame_000000.png"),
                                  png_pixels(tmp_path / "auto" / "frame_000001.png"))
    nan = np.array([[np.nan, np.inf]], dtype=np.float32)
    np.testing.assert_array_equal(png_pixels(write_png(tmp_path / "nan.png", nan, scale=1.0)), [[0, 255]])


def test_a_fixed_scale_reaches_the_video(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="writing video needs the 'video' extra (imageio-ffmpeg)")
    import imageio.v2 as imageio

    frames = np.stack([np.full((32, 32), v, dtype=np.float32) for v in (0.1, 0.3, 0.5)])  # flat frames, rising
    for name, scale in (("fixed.mp4", 0.5), ("auto.mp4", None)):
        write_frames(tmp_path / name, frames, fps=10, scale=scale)
    reader = imageio.get_reader(tmp_path / "fixed.mp4")
    try:
        means = [float(np.asarray(f)[..., 0].mean()) for f in reader]
    finally:
        reader.close()
    assert means == pytest.approx([51, 153, 255], abs=6)  # v / 0.5 * 255 (lossy codec)
    reader = imageio.get_reader(tmp_path / "auto.mp4")
    try:
        assert max(float(np.asarray(f).mean()) for f in reader) < 6  # per frame, a flat frame is black
    finally:
        reader.close()


@pytest.mark.parametrize("text, scale", [("auto", None), ("AUTO", None), (None, None), ("0.6", 0.6), ("255", 255.0)])
def test_display_scale_spellings(text, scale):
    assert parse_display_scale(text) == scale


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "bright", ""])
def test_a_bad_display_scale_is_refused_quoting_it(text):
    with pytest.raises(ValueError, match=f"scale must be 'auto' or a positive number .*got {text!r}"):
        parse_display_scale(text)


def test_a_fixed_scale_is_refused_for_raw_npy(tmp_path):
    with pytest.raises(ValueError, match="holds raw values; a display scale"):
        write_frames(tmp_path / "raw.npy", KNOWN[None], scale=1.0)
    assert list(tmp_path.iterdir()) == []
