"""Supervised training of LRN and STIR (``spike-train fit``): data, losses, schedule, checkpoints, DDP.

- Data: ``--data synthetic`` (simulated on the fly, ``training.datasets``) or a REDS_BASE / SREDS
  folder. Batch ``b`` of step ``s`` on rank ``r`` is a pure function of ``(seed, s, r)``, so a resumed
  run sees exactly the batches an uninterrupted run would have seen, on any number of workers.
- Targets are firing-rate images (``training.datasets.intensity_to_rate``); the network output is
  compared with them directly.
- Losses: LRN ``L1``; STIR ``L1 + multi-scale L1`` on its coarser images (each level clamped to
  [0, 1] as in the published training, targets area-downsampled), plus ``0.2 x`` a VGG-19
  perceptual L1 only when ``--vgg-weights`` names a local torchvision VGG-19 state_dict.
- Optimiser: Adam. Schedule: step decay ``lr_gamma`` every ``lr_decay_every`` steps; STIR's default
  follows the paper (x0.7 every third of the run: 50 of 150 epochs), LRN's default is constant.
- Outputs in ``--out RUN_DIR``: ``train_state.pt`` (model, optimiser, scheduler, step, best
  validation PSNR, RNG states, config; written atomically every ``save_every`` steps and at the end),
  ``last.pt`` and ``best.pt`` (plain fp32 state_dicts, strict-loadable by
  ``edge.reconstruction.models.checkpoints``; best by validation PSNR), ``log.csv`` and ``log.jsonl`` (one row per
  logged step), ``summary.json``.
- Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
  ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); every rank draws its own batches; rank 0
  alone validates, logs and writes files. At the end the ranks compare their parameters and the
  largest difference is recorded in ``summary.json`` (``replica_max_abs_diff``; 0 when in step).

Design: the networks are imported from ``edge.reconstruction.models`` (one definition of each); ``TrainForward``
wraps them so that DDP sees every output used by the loss (STIR's coarser levels come from
``forward_levels``, which plain ``forward`` does not return). Validation PSNR is computed on
intensity (``rate_to_intensity``), the same convention as ``spike-train eval``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets import (
    PairedSpikeDataset,
    SpikeSample,
    SyntheticSettings,
    SyntheticSpikeDataset,
    collate,
    rate_to_intensity,
    training_source,
)
from edge.reconstruction.methods import LEARNED_METHOD_NAMES
from edge.reconstruction.models import Precision
from firmware_io.atomic import atomic_path, write_text_atomic
from training.metrics import psnr, ssim

log = logging.getLogger(__name__)

MODELS = tuple(LEARNED_METHOD_NAMES)
DEFAULT_LR = {"lrn": 5e-4, "stir": 1e-4}
TRAIN_PRECISIONS = (Precision.FP32.value, Precision.BF16.value)  # bf16: autocast; weights and Adam stay fp32
STATE_FILE = "train_state.pt"
LOG_FIELDS = ("step", "loss", "l1", "multiscale", "perceptual", "lr", "val_psnr", "val_ssim", "elapsed_s")


@dataclass
class FitConfig:
    """Every setting of a run; a TOML ``--config`` file sets any of these keys, CLI flags override."""

    model: str = "lrn"
    data: str = "synthetic"  # "synthetic", "reds-like" (photographs of `photos`) or a REDS_BASE/SREDS folder
    photos: str = "runs/photos"  # the photo set of `spike-train data` (for --data reds-like)
    precision: str = "fp32"  # "bf16": forward and loss under CPU/CUDA bf16 autocast (weights stay fp32)
    steps: int = 1000
    batch: int = 8
    crop: int = 96
    lr: float | None = None  # default per model: DEFAULT_LR
    lr_decay_every: int | None = None  # default: STIR steps // 3, LRN none
    lr_gamma: float = 0.7
    out: str = "runs/fit"
    resume: bool = False
    val_every: int = 200
    val_samples: int = 8
    val_crop: int = 128
    val_data: str | None = None  # folder; default: a fixed synthetic set (seed + 1,000,003)
    save_every: int | None = None  # default: val_every
    log_every: int = 10
    init: str | None = None
    seed: int = 0
    threads: int | None = None
    workers: int = 0
    vgg_weights: str | None = None
    vgg_weight: float = 0.2
    multiscale_weight: float = 1.0
    low_light: float = 0.0  # share of synthetic samples in low light
    scene_fraction: float = 0.0  # share of synthetic samples from firmware_io.scenes' built-in scenes
    stir_window: int = 61
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        for name in ("steps", "batch", "crop", "val_every", "val_samples", "val_crop", "log_every"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.model == "stir" and (self.crop % 16 or self.val_crop % 16):
            raise ValueError(f"STIR crops must be multiples of 16, got crop {self.crop}, val_crop {self.val_crop}")
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(TRAIN_PRECISIONS)}, got {self.precision!r}")
        for name in ("low_light", "scene_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a fraction in [0, 1], got {getattr(self, name)}")

    @property
    def learning_rate(self) -> float:
        return float(self.lr if self.lr is not None else DEFAULT_LR[self.model])

    @property
    def decay_every(self) -> int:
        if self.lr_decay_every is not None:
            return int(self.lr_decay_every)
        return max(self.steps // 3, 1) if self.model == "stir" else 0


def load_config(path: str | os.PathLike | None, overrides: dict[str, Any]) -> FitConfig:
    """``FitConfig`` from a TOML file (optional) with ``overrides`` (``None`` values ignored) on top."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            import tomli as tomllib
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, "rb") as f:
            values = tomllib.load(f)
        values = values.get("fit", values)
        known = {f.name for f in dataclasses.fields(FitConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FitConfig(**values)


# ------------------------------------------------------------------------------------ the models


def build_model(config: FitConfig):
    from edge.reconstruction.models.checkpoints import load_strict, read_state_dict
    from edge.reconstruction.networks import build_network

    if config.model == "lrn":
        model = build_network("lrn")
    else:
        model = build_network("stir", window_planes=config.stir_window)
    if config.init:
        load_strict(model, read_state_dict(config.init), config.init)
    return model


def _train_forward_module():
    import torch
    from torch import nn

    class TrainForward(nn.Module):
        """Uint8 planes in, list of output images (finest first) out; wraps one network."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, planes: torch.Tensor) -> list[torch.Tensor]:
            x = self.net.prepare(planes)
            if hasattr(self.net, "forward_levels"):
                return list(self.net.forward_levels(x).images)
            return [self.net(x)]

    return TrainForward


def window_planes_of(model) -> int:
    return int(model.window_planes)


# ------------------------------------------------------------------------------------ the losses


class Losses:
    """Computes the loss terms for one batch; ``perceptual`` only with a VGG-19 state_dict."""

    # ReLU outputs of VGG-19 ``features``: relu1_2, relu2_2, relu3_4, relu4_4
    VGG_LAYERS = (3, 8, 17, 26)

    def __init__(self, config: FitConfig, device) -> None:
        import torch

        self.config = config
        self.vgg = None
        if config.vgg_weights:
            import torchvision

            from edge.reconstruction.models.checkpoints import load_strict, read_state_dict

            vgg = torchvision.models.vgg19(weights=None)
            load_strict(vgg, read_state_dict(config.vgg_weights), config.vgg_weights)
            self.vgg = vgg.features[: self.VGG_LAYERS[-1] + 1].to(device).eval()
            for p in self.vgg.parameters():
                p.requires_grad_(False)
            self.mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
            self.std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

    def _vgg_features(self, rate_image):
        x = (rate_to_intensity(rate_image).repeat(1, 3, 1, 1) - self.mean) / self.std
        feats = []
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in self.VGG_LAYERS:
                feats.append(x)
        return feats

    def __call__(self, outputs, target) -> dict:
        import torch.nn.functional as F

        terms = {"l1": F.l1_loss(outputs[0], target)}
        total = terms["l1"]
        if len(outputs) > 1:
            ms = 0.0
            for level in outputs[1:]:
                small = F.interpolate(target, size=level.shape[-2:], mode="area")
                ms = ms + F.l1_loss(level.clamp(0.0, 1.0), small)
            terms["multiscale"] = ms
            total = total + self.config.multiscale_weight * ms
        if self.vgg is not None:
            fo, ft = self._vgg_features(outputs[0]), self._vgg_features(target)
            terms["perceptual"] = sum(F.l1_loss(a, b) for a, b in zip(fo, ft))
            total = total + self.config.vgg_weight * terms["perceptual"]
        terms["loss"] = total
        return terms


# ------------------------------------------------------------------------------------ the data


class StepBatches:
    """Item ``s`` is the collated batch of step ``s`` for this rank (a pure function of seed, step, rank)."""

    def __init__(self, config: FitConfig, window_planes: int, rank: int) -> None:
        self.config = config
        self.rank = rank
        if config.data == "reds-like":
            from training.reds_like import reds_like_source

            self.draw = reds_like_source(config.photos, window_planes, config.crop, config.seed)
        else:
            self.draw = training_source(config.data, window_planes, config.crop, config.seed, config.low_light,
                                        config.scene_fraction)

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int):
        samples = []
        for i in range(self.config.batch):
            rng = np.random.default_rng([self.config.seed, step, self.rank, i])
            samples.append(self.draw(rng, (step * 1_000 + self.rank) * 10_000 + i))
        return collate(samples)


def validation_samples(config: FitConfig, window_planes: int) -> list[SpikeSample]:
    if config.val_data:
        dataset = PairedSpikeDataset(config.val_data, window_planes)
        return [dataset[i] for i in range(min(len(dataset), config.val_samples))]
    if config.data == "reds-like":  # held-out photographs (the photo set's val split), never trained on
        from training.photos import load_photo_set
        from training.reds_like import RedsLikeSettings, make_reds_like_sample

        val_photos = load_photo_set(config.photos, "val")
        reds_settings = RedsLikeSettings(window_planes=window_planes, crop=config.val_crop, procedural_fraction=0.0)
        return [make_reds_like_sample(reds_settings, val_photos, np.random.default_rng([config.seed + 1_000_003, i]),
                                      name=f"reds-like-val-{i}") for i in range(config.val_samples)]
    settings = SyntheticSettings(window_planes=window_planes, crop=config.val_crop, low_light_fraction=config.low_light,
                                 scene_fraction=config.scene_fraction)
    dataset = SyntheticSpikeDataset(settings, length=config.val_samples, seed=config.seed + 1_000_003)
    return [dataset[i] for i in range(config.val_samples)]


def validate(net, samples: list[SpikeSample], device) -> tuple[float, float]:
    """Mean PSNR / SSIM (intensity, clipped) of ``net`` over ``samples``."""
    import torch

    from training.datasets import rate_to_intensity as to_intensity

    net.eval()
    psnrs, ssims = [], []
    with torch.no_grad():
        for sample in samples:
            planes = torch.from_numpy(sample.planes[None]).to(device)
            out = net(net.prepare(planes))[0, 0].float().cpu().numpy()
            image = to_intensity(out)
            reference = to_intensity(sample.target)
            psnrs.append(psnr(image, reference))
            ssims.append(ssim(image, reference))
    net.train()
    return float(np.mean(psnrs)), float(np.mean(ssims))


# ------------------------------------------------------------------------------------ checkpoints


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` through ``firmware_io.atomic``: the file appears whole or not at all."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def plain_state_dict(net) -> dict:
    """fp32 CPU copy of the network's state_dict (strict-loadable by ``edge.reconstruction.models.checkpoints``)."""
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().clone() for k, v in net.state_dict().items()}


def rng_states() -> dict:
    import torch

    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RunLog:
    """``log.csv`` + ``log.jsonl`` rows; on resume, rows after the resumed step are dropped."""

    def __init__(self, out: Path, resume_step: int | None) -> None:
        self.csv_path = out / "log.csv"
        self.jsonl_path = out / "log.jsonl"
        rows: list[dict] = []
        if resume_step is not None and self.jsonl_path.exists():
            for line in self.jsonl_path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row["step"] <= resume_step:
                        rows.append(row)
        self.rows = rows
        self._rewrite()

    def _rewrite(self) -> None:
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
        with open(self.jsonl_path, "w") as f:
            for row in self.rows:
                f.write(json.dumps(row) + "\n")

    def append(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------ distributed


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed():
    """Join the process group torchrun set up (``WORLD_SIZE > 1``); returns ``(DistInfo, device)``."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{info.local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if info.enabled and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info, device


def replica_max_abs_diff(net, info: DistInfo) -> float:
    """Largest parameter difference between this rank and rank 0 (max over ranks; 0 when in step)."""
    import torch
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1).float() for p in net.state_dict().values() if p.is_floating_point()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


# ------------------------------------------------------------------------------------ the loop


@dataclass
class FitResult:
    out: Path
    step: int
    best_val_psnr: float
    last_loss: float
    losses: list[float] = field(default_factory=list)
    replica_max_abs_diff: float | None = None


def fit(config: FitConfig) -> FitResult:
    """Train according to ``config``; returns a summary (rank 0's view under DDP)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if config.threads:
        torch.set_num_threads(int(config.threads))
    info, device = init_distributed()
    out = Path(config.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)  # same initial weights on every rank
    np.random.seed(config.seed)
    random.seed(config.seed)

    net = build_model(config).to(device)
    window = window_planes_of(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    decay = config.decay_every
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=decay if decay > 0 else 10**12, gamma=config.lr_gamma)

    start_step, best_psnr = 0, float("-inf")
    state_path = out / STATE_FILE
    if config.resume:
        if state_path.exists():
            state = torch.load(state_path, map_location="cpu", weights_only=False)
            if state["config"]["model"] != config.model:
                raise ValueError(f"{state_path} is a {state['config']['model']} run, not {config.model}")
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_step = int(state["step"])
            best_psnr = float(state["best_val_psnr"])
            set_rng_states(state["rng"])
            log.info("resumed %s at step %d", state_path, start_step)
        else:
            log.warning("--resume: no %s yet; starting from step 0", state_path)

    forward = _train_forward_module()(net).to(device)
    if info.enabled:
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    forward.train()
    losses_fn = Losses(config, device)
    val_set = validation_samples(config, window) if info.is_main else []
    runlog = RunLog(out, start_step if config.resume else None) if info.is_main else None

    batches = StepBatches(config, window, info.rank)
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start_step, config.steps), num_workers=config.workers,
        persistent_workers=False, prefetch_factor=2 if config.workers else None,
    )
    save_every = config.save_every or config.val_every
    progress = None
    if info.is_main and config.progress:
        from tqdm import tqdm

        progress = tqdm(total=config.steps, initial=start_step, desc=f"fit {config.model}", mininterval=5.0, dynamic_ncols=True)

    def save_state(step: int) -> None:
        if not info.is_main:
            return
        weights = plain_state_dict(net)
        atomic_torch_save(
            {
                "model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "step": step, "best_val_psnr": best_psnr, "rng": rng_states(), "config": dataclasses.asdict(config),
            },
            state_path,
        )
        atomic_torch_save(weights, out / "last.pt")

    t0 = time.monotonic()
    losses: list[float] = []
    step = start_step
    acc: dict[str, float] = {}
    n_acc = 0
    for planes, targets, _labels in loader:
        planes = planes.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=Precision.BF16.torch_dtype, enabled=config.precision == Precision.BF16.value):
            outputs = forward(planes)
            terms = losses_fn(outputs, targets)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        scheduler.step()
        step += 1
        value = float(terms["loss"].detach())
        losses.append(value)
        for k, v in terms.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        n_acc += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{value:.4f}", refresh=False)
        validate_now = step % config.val_every == 0 or step == config.steps
        if info.is_main and (step % config.log_every == 0 or validate_now):
            row = {"step": step, **{k: v / n_acc for k, v in acc.items()}, "lr": scheduler.get_last_lr()[0],
                   "elapsed_s": round(time.monotonic() - t0, 2)}
            acc, n_acc = {}, 0
            if validate_now:
                row["val_psnr"], row["val_ssim"] = validate(net, val_set, device)
                if row["val_psnr"] > best_psnr:
                    best_psnr = row["val_psnr"]
                    atomic_torch_save(plain_state_dict(net), out / "best.pt")
                log.info("step %d loss %.5f val PSNR %.2f dB SSIM %.4f", step, row["loss"], row["val_psnr"], row["val_ssim"])
            runlog.append(row)
        if step % save_every == 0 or step == config.steps:
            save_state(step)
    if progress is not None:
        progress.close()

    diff = None
    if info.enabled:
        diff = replica_max_abs_diff(net, info)
    result = FitResult(out, step, best_psnr, losses[-1] if losses else float("nan"), losses, diff)
    if info.is_main:
        summary = {
            "model": config.model, "steps": step, "world_size": info.world, "best_val_psnr": best_psnr,
            "last_loss": result.last_loss, "wall_s": round(time.monotonic() - t0, 1),
            "replica_max_abs_diff": diff, "config": dataclasses.asdict(config),
        }
        if config.data == "reds-like":
            from training.reds_like import RedsLikeSettings

            summary["data_generator"] = RedsLikeSettings(window_planes=window, crop=config.crop).as_dict()
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


__all__ = ["FitConfig", "FitResult", "fit", "load_config", "Losses", "StepBatches", "validate", "MODELS"]
