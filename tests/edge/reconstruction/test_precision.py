"""Precisions: the dtype mapping, CPU bf16 detection, ``--precision auto``'s pick, its cache and its rule."""

from __future__ import annotations

import json
import stat

import pytest

from edge.reconstruction.backends.base import Device
from edge.reconstruction.backends.precision import (
    BF16_CPU_MEASURED,
    MAX_CACHE_ENTRIES,
    PickCache,
    PickKey,
    PrecisionTrial,
    default_cache_path,
    fallback_precision,
    pick_precision,
)
from edge.reconstruction.cpu_features import bf16_support, parse_cpuinfo
from edge.reconstruction.methods import Method
from edge.reconstruction.models import PRECISION_SETTINGS, PRECISIONS, Precision, PrecisionSetting

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
"""
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6130\nflags\t\t: fpu sse avx2 avx512f avx512bw\n"
COOPER_LAKE = "model name\t: Intel(R) Xeon(R) Gold 5320H\nflags\t\t: avx512f avx512_bf16\n"

FP32, FP16, BF16 = Precision.FP32, Precision.FP16, Precision.BF16


def test_precision_set_and_dtypes():
    torch = pytest.importorskip("torch")
    assert PRECISIONS == ["fp32", "fp16", "bf16"]
    assert PRECISION_SETTINGS == ["auto", *PRECISIONS]
    assert [p.torch_dtype for p in Precision] == [torch.float32, torch.float16, torch.bfloat16]
    assert [p.dtype_name for p in Precision] == ["float32", "float16", "bfloat16"]
    assert PrecisionSetting("bf16").value == Precision.BF16.value
    with pytest.raises(ValueError):
        Precision("bfloat")


def test_cpuinfo_flags_say_what_bf16_runs_on():
    model, flags = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert model == "Intel(R) Xeon(R) Platinum 8480+" and {"amx_bf16", "amx_tile", "avx512_bf16"} <= flags
    amx = bf16_support(SAPPHIRE_RAPIDS, "AMX")
    assert amx.avx512_bf16 and amx.amx and amx.fast_bf16 and amx.torch_capability == "AMX"
    assert "amx_bf16" in amx.summary() and amx.as_dict()["fast_bf16"] is True
    avx512 = bf16_support(COOPER_LAKE, "AVX512")
    assert avx512.fast_bf16 and not avx512.amx
    plain = bf16_support(SKYLAKE, "AVX512")
    assert not plain.fast_bf16 and "no AVX512-BF16 or AMX" in plain.summary()
    tile_only = bf16_support("flags\t: amx_tile\n", None)
    assert not tile_only.amx and not tile_only.fast_bf16  # AMX needs amx_bf16 for bf16
    empty = bf16_support("", None)
    assert empty.model is None and not empty.fast_bf16


def trial(precision: Precision, ms: float, loss: float | None) -> PrecisionTrial:
    return PrecisionTrial(precision, ms, loss)


@pytest.mark.parametrize(("trials", "expected"), [
    ([trial(FP32, 100, 0.0), trial(BF16, 40, 0.02)], BF16),  # faster and within 0.1 dB
    ([trial(FP32, 100, 0.0), trial(BF16, 40, 0.3)], FP32),  # faster but loses too much
    ([trial(FP32, 100, 0.0), trial(BF16, 140, 0.0)], FP32),  # no faster (a CPU without bf16 instructions)
    ([trial(FP32, 100, 0.0), trial(BF16, 40, None)], FP32),  # quality not measured: never picked
    ([trial(FP32, 100, 0.0), trial(BF16, 40, -0.01)], BF16),  # by chance a little better than fp32
    ([trial(FP32, 9, 0.0), trial(FP16, 3, 0.01), trial(BF16, 2.5, 0.15)], FP16),
    ([trial(FP32, 9, 0.0), trial(FP16, 3, 0.01), trial(BF16, 2.5, 0.1)], BF16),  # the bound is inclusive
    ([trial(FP32, 9, 5.0)], FP32),  # fp32 is the reference: always a candidate
])
def test_pick_is_the_fastest_within_tolerance(trials, expected):
    assert pick_precision(trials) is expected


def test_pick_needs_the_fp32_reference():
    with pytest.raises(ValueError, match=r"\['bf16'\] have no fp32"):
        pick_precision([trial(BF16, 1, 0.0)])


def key(method: Method = Method.LRN, hardware: str = "cpu-a") -> PickKey:
    return PickKey(hardware, "2.14", method, Device.CPU)


def test_cache_round_trip_replaces_and_is_atomic(tmp_path):
    path = tmp_path / "deep" / "picks.json"
    cache = PickCache(path)
    assert cache.get(key()) is None  # no file yet
    cache.put(key(), BF16, [trial(FP32, 100, 0.0), trial(BF16, 40, 0.01)])
    cache.put(key(Method.STIR), FP32)
    assert PickCache(path).get(key()) is BF16 and PickCache(path).get(key(Method.STIR)) is FP32
    assert cache.get(key(hardware="cpu-b")) is None  # another machine's key
    cache.put(key(), FP32)  # a new measurement replaces the entry
    data = json.loads(path.read_text())
    assert cache.get(key()) is FP32 and len(data["entries"]) == 2
    assert data["entries"][-1]["key"] == {"hardware": "cpu-a", "torch": "2.14", "method": "lrn", "device": "cpu"}
    assert [p.name for p in path.parent.iterdir()] == ["picks.json"]  # no temporary left beside it
    assert stat.S_ISREG(path.stat().st_mode)


def test_cache_is_bounded_oldest_first(tmp_path):
    cache = PickCache(tmp_path / "picks.json")
    for i in range(MAX_CACHE_ENTRIES + 3):
        cache.put(key(hardware=f"cpu-{i}"), BF16)
    entries = json.loads(cache.path.read_text())["entries"]
    assert len(entries) == MAX_CACHE_ENTRIES
    assert cache.get(key(hardware="cpu-0")) is None and cache.get(key(hardware="cpu-2")) is None
    assert cache.get(key(hardware="cpu-3")) is BF16 and cache.get(key(hardware=f"cpu-{MAX_CACHE_ENTRIES + 2}")) is BF16


@pytest.mark.parametrize("text", ["{not json", json.dumps({"version": 99, "entries": []}), json.dumps([1, 2])])
def test_an_unreadable_cache_counts_as_empty_and_is_replaced(tmp_path, text):
    path = tmp_path / "picks.json"
    path.write_text(text)
    cache = PickCache(path)
    assert cache.get(key()) is None
    cache.put(key(), BF16)
    assert cache.get(key()) is BF16


def test_cache_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "spike-edge" / "precision-picks.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "spike-edge" / "precision-picks.json"


def test_the_rule_without_a_measurement():
    amx, plain = bf16_support(SAPPHIRE_RAPIDS, "AMX"), bf16_support(SKYLAKE, "AVX512")
    assert fallback_precision(Method.LRN, Device.CUDA, plain)[0] is FP16
    for method in Method:
        chosen, why = fallback_precision(method, Device.CPU, plain)
        assert chosen is FP32 and "neither AVX512-BF16 nor AMX" in why  # auto never picks bf16 there
    for method in BF16_CPU_MEASURED:
        chosen, why = fallback_precision(method, Device.CPU, amx)
        assert chosen is BF16 and "AMX" in why and "0.1 dB" in why
    assert BF16_CPU_MEASURED == {Method.LRN, Method.STIR}
    chosen, why = fallback_precision(Method.TFP, Device.CPU, amx)  # not a network: never measured in bf16
    assert chosen is FP32 and "not measured both faster" in why


def test_resolve_prefers_the_cached_pick(tmp_path):
    pytest.importorskip("torch")
    from edge.reconstruction.backends.precision import pick_key, resolve_precision

    cache = PickCache(tmp_path / "picks.json")
    amx, plain = bf16_support(SAPPHIRE_RAPIDS, "AMX"), bf16_support(SKYLAKE, "AVX512")
    chosen, why = resolve_precision(Method.LRN, Device.CPU, cache=cache, cpu=amx)
    assert chosen is BF16 and "no measurement cached" in why
    cache.put(pick_key(Method.LRN, Device.CPU), FP32)
    chosen, why = resolve_precision(Method.LRN, Device.CPU, cache=cache, cpu=amx)
    assert chosen is FP32 and "measured" in why
    assert resolve_precision(Method.STIR, Device.CPU, cache=cache, cpu=amx)[0] is BF16  # the rule
    cache.put(pick_key(Method.STIR, Device.CPU), FP32)  # measured here: the measurement wins
    assert resolve_precision(Method.STIR, Device.CPU, cache=cache, cpu=amx)[0] is FP32
    cache.put(pick_key(Method.STIR, Device.CPU), BF16)
    chosen, why = resolve_precision(Method.STIR, Device.CPU, cache=cache, cpu=plain)
    assert chosen is FP32 and "neither AVX512-BF16 nor AMX" in why  # never bf16 without its instructions
    assert resolve_precision(Method.STIR, Device.CPU, allowed=(FP32,), cache=cache, cpu=amx) == (
        FP32, "the backend runs fp32 only")
