"""Property-based fuzzing of every spike-file reader (``.dat`` with and without head columns, ``.npz``), through
``open_recording`` as the command lines use it: whatever the bytes, a reader either opens and serves planes that
are 0/1 and consistent, or raises ``FormatError`` (a ``ValueError``) naming the file; it never crashes, never
raises anything else, and never allocates more than a bound however large the sizes the file declares.

(Folder recordings are ``spike-host``'s, read by ``host.record``; their tests live with it.)
"""

from __future__ import annotations

import io
import os
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_io.bitpack import unpack_planes
from firmware_io.contract import FormatError, Geometry
from firmware_io.dat import WITH_HEAD_EXTRA_COLUMNS
from firmware_io.recording import open_recording

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PEAK_BYTES = 64 << 20  # no example may allocate more, whatever its headers declare


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_recording(rec, chunk: int) -> None:
    """The invariants of an opened recording: plane count, shapes, 0/1 values, packed and unpacked agree."""
    assert rec.n_planes >= 1
    g = rec.geometry
    packed = rec.packed()
    assert packed.dtype == np.uint8 and packed.shape == (rec.n_planes, g.plane_bytes)
    unpacked = rec.unpacked()
    assert unpacked.shape == (rec.n_planes, g.height, g.width)
    assert set(np.unique(unpacked)) <= {0, 1}
    np.testing.assert_array_equal(unpack_planes(packed, g), unpacked)
    joined = np.concatenate([p for _, p in rec.iter_packed(chunk)])
    np.testing.assert_array_equal(joined, packed)


def open_bounded(path, **options):
    """``open_recording`` under tracemalloc: the recording (or the exception) and the peak bytes allocated."""
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # allow_partial warns about the partial plane it ignores
            try:
                result = open_recording(path, **options)
            except Exception as exc:  # noqa: BLE001 - the test classifies it below
                result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def assert_project_error(exc: BaseException, path) -> None:
    assert isinstance(exc, FormatError), f"{type(exc).__name__}: {exc}"
    assert str(path.name) in str(exc), str(exc)


# -- .dat ---------------------------------------------------------------------------------------------------------
@FUZZ
@given(data=st.binary(max_size=3000), height=st.integers(1, 12), width=st.integers(1, 40), with_head=st.booleans(),
       allow_partial=st.booleans(), chunk=st.integers(1, 9), cut=st.none() | st.floats(0, 1))
def test_dat_reader_any_bytes(workdir, data, height, width, with_head, allow_partial, chunk, cut):
    path = workdir / "fuzz.dat"
    path.write_bytes(data)
    result, peak = open_bounded(path, geometry=Geometry(height, width), with_head=with_head,
                                allow_partial=allow_partial)
    assert peak < PEAK_BYTES
    stored = Geometry(height, width + (WITH_HEAD_EXTRA_COLUMNS if with_head else 0))
    if isinstance(result, Exception):
        assert_project_error(result, path)
        whole, trailing = divmod(len(data), stored.plane_bytes)
        assert whole == 0 or (trailing and not allow_partial), "a whole number of planes must open"
        return
    with result as rec:
        assert rec.n_planes == len(data) // stored.plane_bytes
        check_recording(rec, chunk)
        if cut is not None:  # the file shrinks under the open reader: a FormatError, never a crash
            size = int(len(data) * cut)
            os.truncate(path, size)
            try:
                rec.packed()
            except FormatError as exc:
                assert "shrank" in str(exc) and size < rec.n_planes * stored.plane_bytes
            else:
                assert size >= rec.n_planes * stored.plane_bytes


# -- .npz ---------------------------------------------------------------------------------------------------------
DTYPES = ["|b1", "|u1", "<i2", ">i4", "<f4", "<f8", "<f2", "<U3", "|S2", "<c8", "|V4", "<M8[s]", "O",
          [("a", "u1"), ("b", "<f4")]]
MEMBER_NAMES = ["spk.npy", "label.npy", "label_name.npy", "spk", "other.npy"]
COMPRESSIONS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]


@st.composite
def npy_bytes(draw) -> bytes:
    """A .npy member: a real small array (any dtype, values 0..2), a header declaring any shape over too little data,
    or either with bytes flipped."""
    kind = draw(st.sampled_from(["array", "declared", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    descr = draw(st.sampled_from(DTYPES))
    buf = io.BytesIO()
    if kind == "array":
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
        dtype = np.dtype(descr)
        values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 3, size=shape)
        array = np.zeros(shape, dtype) if dtype.fields or dtype.kind in "VMO" else values.astype(dtype)
        if dtype.kind == "O":
            array = np.empty(shape, dtype=object)
        np.lib.format.write_array(buf, array, allow_pickle=True)
    else:
        shape = tuple(draw(st.lists(st.integers(0, 2**62), max_size=4)))
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(descr)),
                                                   "fortran_order": draw(st.booleans()), "shape": shape})
        buf.write(draw(st.binary(max_size=200)))
    data = bytearray(buf.getvalue())
    for position, value in draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)),
                                         max_size=3)):
        if data:
            data[position] = value
    return bytes(data)


@st.composite
def zip_bytes(draw) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate member names are part of the fuzz
        for name in draw(st.lists(st.sampled_from(MEMBER_NAMES), max_size=4)):
            archive.writestr(name, draw(npy_bytes()), compress_type=draw(st.sampled_from(COMPRESSIONS)))
    data = bytearray(buf.getvalue())
    edits = draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)), max_size=3))
    for position, value in edits:
        if data:
            data[position] = value
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@st.composite
def uhsr_bytes(draw) -> bytes:
    """A valid UHSR sample (values 0/1, sometimes one bad value), then a few bytes changed or the end cut off."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spk = (rng.random((draw(st.integers(1, 6)), draw(st.integers(1, 9)), draw(st.integers(1, 17)))) < 0.4)
    spk = spk.astype(draw(st.sampled_from(["|u1", "|b1", "<f4", "<i2"])))
    buf = io.BytesIO()
    save = np.savez_compressed if draw(st.booleans()) else np.savez
    save(buf, spk=spk, label=np.int64(draw(st.integers(0, 100))), label_name=np.str_("7_x.jpg"))
    data = bytearray(buf.getvalue())
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=4)):
        data[position] = value
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(data=st.one_of(st.binary(max_size=2000), zip_bytes(), uhsr_bytes()), chunk=st.integers(1, 7))
def test_npz_reader_any_bytes(workdir, data, chunk):
    path = workdir / "fuzz.npz"
    path.write_bytes(data)
    result, peak = open_bounded(path)
    assert peak < PEAK_BYTES
    if isinstance(result, Exception):
        assert_project_error(result, path)
        return
    with result as rec:
        check_recording(rec, chunk)
        assert rec.label is None or isinstance(rec.label, int)
        assert rec.label_name is None or isinstance(rec.label_name, str)


@FUZZ
@given(suffix=st.text(alphabet="abcdnpztx.", max_size=5))
def test_unknown_suffixes_are_refused(workdir, suffix):
    path = workdir / f"f{suffix}"
    path.write_bytes(b"\0" * 100)
    result, _ = open_bounded(path)
    if path.suffix.lower() in (".dat", ".npz"):
        return  # the readers above
    assert isinstance(result, ValueError) and "expected .dat, .npz or a recording folder" in str(result)
