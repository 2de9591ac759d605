"""The UHSR ``.npz`` reader on files that are not what they claim: every problem is a ``FormatError`` naming
the value, nothing is decompressed beyond the memory budget, and planes are packed chunk by chunk."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from firmware_io.bitpack import pack_planes
from firmware_io.contract import FormatError, Geometry
from firmware_io.npz import CHUNK_BYTES, MAX_MB_ENV, NpzReader, max_bytes_from_env, write_uhsr_npz


def npy_member(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...], descr: str, data: bytes,
               fortran_order: bool = False) -> None:
    """A member ``name`` whose .npy header declares ``shape``/``descr`` and whose data is ``data`` (any length)."""
    with archive.open(name, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": fortran_order, "shape": shape})
        f.write(data)


def planes_of(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, h, w)) < 0.3).astype(np.uint8)


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_bytes(b"hello, not a zip at all")
    with pytest.raises(FormatError, match="text.npz is not a valid .npz file"):
        NpzReader(path)


@pytest.mark.parametrize("label, message", [
    (np.arange(3), r"'label' must be an integer, got an array of shape \(3,\)"),
    (np.str_("cat"), r"'label' must be an integer, got an array of shape \(\) and dtype <U3"),
    (np.float64(2.0), "'label' must be an integer"),
])
def test_label_must_be_one_integer(tmp_path, label, message):
    path = tmp_path / "s.npz"
    np.savez(path, spk=planes_of(4, 3, 5), label=label)
    with pytest.raises(FormatError, match=message):
        NpzReader(path)


def test_label_name_must_be_one_string(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, spk=planes_of(4, 3, 5), label=np.int64(1), label_name=np.array(["a", "b"]))
    with pytest.raises(FormatError, match="'label_name' must be a string"):
        NpzReader(path)
    np.savez(path, spk=planes_of(4, 3, 5), label=np.uint8(200), label_name=np.bytes_(b"12_owl.jpg"))
    reader = NpzReader(path)
    assert (reader.label, reader.label_name) == (200, "12_owl.jpg")


@pytest.mark.parametrize("spk", [
    np.array([[["a", "b"]]]),
    np.zeros((5, 4, 4), dtype=[("a", "u1"), ("b", "f4")]),
    np.zeros((5, 4, 4), dtype=np.complex64),
    np.zeros((5, 4, 4), dtype="datetime64[s]"),
], ids=["strings", "structured", "complex", "datetime"])
def test_spk_of_non_numbers_is_refused_from_its_header(tmp_path, spk):
    path = tmp_path / "s.npz"
    np.savez(path, spk=spk)
    with pytest.raises(FormatError, match=r"'spk' must hold 0/1 numbers \(bool, integer or float\), got dtype"):
        NpzReader(path)


def test_object_spk_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "s.npz"
    spk = np.empty((2, 2, 2), dtype=object)
    spk[...] = 1
    np.savez(path, spk=spk)  # numpy pickles object arrays
    with pytest.raises(FormatError, match="got dtype object"):
        NpzReader(path)


@pytest.mark.parametrize("dtype, bad, shown", [
    (np.int8, -1, "-1"), (np.float64, 0.3, "0.3"), (np.uint8, 2, "2"), (np.float32, np.nan, "nan"),
    (np.int64, 255, "255"),
])
def test_values_other_than_0_and_1_are_refused(tmp_path, dtype, bad, shown):
    spk = planes_of(6, 4, 5).astype(dtype)
    spk[3, 2, 1] = bad
    path = tmp_path / "s.npz"
    np.savez(path, spk=spk)
    with pytest.raises(FormatError, match=rf"must hold only 0 and 1, but plane 3 holds {shown} \(row 2, column 1\)"):
        NpzReader(path)


@pytest.mark.parametrize("convert", [
    lambda p: p.astype(bool), lambda p: p.astype(np.float32), lambda p: p.astype(">i2"),
    lambda p: np.asfortranarray(p), lambda p: p.astype(np.uint8),
], ids=["bool", "float32", "big-endian int16", "fortran order", "uint8"])
def test_any_0_1_number_type_and_order_reads_the_same(tmp_path, convert):
    planes = planes_of(30, 7, 13, seed=3)
    path = tmp_path / "s.npz"
    np.savez_compressed(path, spk=convert(planes), label=np.int64(4), label_name=np.str_("4_cat.jpg"))
    reader = NpzReader(path)
    assert (reader.n_planes, reader.geometry, reader.label, reader.label_name) == (30, Geometry(7, 13), 4, "4_cat.jpg")
    np.testing.assert_array_equal(reader.unpacked(), planes)
    np.testing.assert_array_equal(reader.packed(5, 9), pack_planes(planes[5:9]))


def test_planes_are_checked_and_packed_chunk_by_chunk(tmp_path):
    """More than one chunk: planes join up across chunks, and a bad value in a later chunk names its plane."""
    h, w = 250, 400
    per_chunk = CHUNK_BYTES // (h * w)
    n = per_chunk * 2 + 7
    planes = planes_of(n, h, w, seed=5)
    path = write_uhsr_npz(tmp_path / "big.npz", planes, 1, "1_x.jpg")
    reader = NpzReader(path)
    np.testing.assert_array_equal(reader.packed(), pack_planes(planes))
    bad_plane = per_chunk + 3
    planes[bad_plane, 10, 20] = 7
    np.savez(tmp_path / "bad.npz", spk=planes)
    with pytest.raises(FormatError, match=f"plane {bad_plane} holds 7 \\(row 10, column 20\\)"):
        NpzReader(tmp_path / "bad.npz")


def test_declared_size_over_the_budget_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_MB_ENV, raising=False)
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:  # declares 2**40 planes, holds none
        npy_member(archive, "spk.npy", (2**40, 250, 400), "|u1", b"")
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"1,099,511,627,776 planes of 250x400 uint8: reading it needs "
                                               r"[\d,.]+ MB, over the 1,024.0 MB budget"):
            NpzReader(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    planes = planes_of(100, 50, 80)
    write_uhsr_npz(path, planes, 0, "0_a.jpg")  # needs 50 KB packed + one 100-plane chunk (1.6 MB)
    with pytest.raises(FormatError, match=r"over the 0.2 MB budget .*SPIKE_EDGE_NPZ_MAX_MB"):
        NpzReader(path, max_bytes=200_000)
    monkeypatch.setenv(MAX_MB_ENV, "0.2")
    with pytest.raises(FormatError, match="over the 0.2 MB budget"):
        NpzReader(path)
    monkeypatch.setenv(MAX_MB_ENV, "2")
    np.testing.assert_array_equal(NpzReader(path).unpacked(), planes)
    monkeypatch.setenv(MAX_MB_ENV, "lots")
    with pytest.raises(ValueError, match="SPIKE_EDGE_NPZ_MAX_MB must be a number of megabytes, got 'lots'"):
        max_bytes_from_env()


def test_member_size_must_match_its_header(tmp_path):
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        npy_member(archive, "spk.npy", (10, 4, 8), "|u1", bytes(4 * 8 * 9))  # one plane missing
    with pytest.raises(FormatError, match=r"holds \d+ bytes, but its header declares \(10, 4, 8\) uint8 .* truncated"):
        NpzReader(path)


def test_plane_too_large_for_the_stack(tmp_path):
    path = tmp_path / "wide.npz"
    with zipfile.ZipFile(path, "w") as archive:
        npy_member(archive, "spk.npy", (1, 100_000, 100_000), "|u1", b"")
    with pytest.raises(FormatError, match="a 100000x100000 plane has 10,000,000,000 pixels"):
        NpzReader(path)


@pytest.mark.parametrize("header", [
    b"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4",  # unbalanced: a tokenizer error
    b"{'descr': '|u1', 'fortran_order': False}",  # no shape
    b"{'descr': 'not a dtype', 'fortran_order': False, 'shape': (2, 3, 4)}",
    b"(" * 5000,
    b"\xff\xfe",
])
def test_malformed_npy_header(tmp_path, header):
    path = tmp_path / "h.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("spk.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    with pytest.raises(FormatError, match="'spk' is not a valid .npy array"):
        NpzReader(path)


def test_corrupt_deflate_stream_is_a_format_error(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, spk=planes_of(200, 30, 40))
    data = bytearray(path.read_bytes())
    start = data.index(b"spk.npy") + 200  # inside the compressed data of the first member
    data[start: start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="c.npz"):
        NpzReader(path)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_only_numpys_compressions_are_read(tmp_path, method):
    path = tmp_path / "z.npz"
    buf = io.BytesIO()
    np.lib.format.write_array(buf, planes_of(3, 4, 5))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("spk.npy", buf.getvalue(), compress_type=method)
    with pytest.raises(FormatError, match=f"uses zip compression method {method}; .npz members are stored or deflated"):
        NpzReader(path)
