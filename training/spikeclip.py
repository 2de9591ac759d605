"""The SpikeCLIP recipe for LRN (``spike-train spikeclip``): coarse, prompt-learning and fine stages.

Stages (epochs as in the paper by default: 5 coarse, 1 prompt, 19 fine; ``max_steps_per_stage``
caps each for smoke runs):

1. Coarse: LRN regresses the TFI image of its 200-plane window (L1; TFI from ``edge.reconstruction.classical.tfi``
   on the whole window, key at the centre), Adam at ``lr``.
2. Prompt learning (CoOp style): two learnable contexts of ``n_ctx`` token embeddings, "HQ" and
   "LQ", are run through CLIP's frozen text encoder in place of the ``X`` tokens of "X X ... X .";
   cross-entropy over the two prompt features classifies high-quality images as HQ and degraded
   ones (the coarse LRN's outputs and TFI images) as LQ. CLIP stays frozen.
3. Fine: LRN is trained with ``InfoNCE(class) + lambda x prompt loss`` (lambda = 100): the class
   term is the cross-entropy of CLIP's image features against the text features of
   "X X ... X <class name>." for every class of the training split; the prompt term is the
   cross-entropy of the LRN output being classified HQ by the learned prompts (frozen now).

Images reach CLIP as the 1-channel output, min-max normalised per image, resized to CLIP's input
size, repeated to 3 channels and normalised with a grey CLIP mean/std (the means of CLIP's RGB
constants). CLIP weights come from a local file (``--clip-weights``, ``--clip-model ViT-B-32``);
nothing is downloaded. Data: UHSR ``.npz`` folders (``training.datasets.UHSRDataset``).

Design: high-quality references for the prompt stage. The paper uses natural images; with no
downloads allowed, ``--hq-dir`` takes a local folder of images and, without one, the procedural
natural-like images of ``training.datasets`` stand in (stated in the summary). Per-image min-max
before CLIP (rather than a fixed scale) keeps the CLIP input independent of the light level, which
matters because UHSR captures are low light and the coarse stage targets TFI's 1/interval scale.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CLIP_MEAN_RGB = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD_RGB = (0.26862954, 0.26130258, 0.27577711)
CLIP_GREY_MEAN = float(np.mean(CLIP_MEAN_RGB))
CLIP_GREY_STD = float(np.mean(CLIP_STD_RGB))
PROMPT_LAMBDA = 100.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class SpikeClipConfig:
    data: str
    clip_weights: str | None = None
    clip_model: str = "ViT-B-32"
    out: str = "runs/spikeclip"
    coarse_epochs: int = 5
    prompt_epochs: int = 1
    fine_epochs: int = 19
    max_steps_per_stage: int | None = None
    batch: int = 8
    lr: float = 4e-5  # the paper: 4e-5 (CALTECH), 1e-4 (CIFAR)
    prompt_lr: float = 1e-3
    n_ctx: int = 4
    prompt_lambda: float = PROMPT_LAMBDA
    init: str | None = None
    hq_dir: str | None = None
    seed: int = 0
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("coarse_epochs", "prompt_epochs", "fine_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch <= 0 or self.n_ctx <= 0:
            raise ValueError(f"batch and n_ctx must be positive, got {self.batch}, {self.n_ctx}")


# ----------------------------------------------------------------------------------- CLIP parts


def load_clip(model_name: str, weights: str | os.PathLike):
    """An open_clip model with weights from a local file, and its tokenizer (no downloads)."""
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - optional extra
        raise RuntimeError("SpikeCLIP needs open_clip: pip install 'spike-edge[train]'") from exc
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights not found: {path} (give a local open_clip/OpenAI checkpoint file)")
    model = open_clip.create_model(model_name, pretrained=str(path))
    return model, open_clip.get_tokenizer(model_name)


def clip_image_size(clip_model) -> tuple[int, int]:
    size = clip_model.visual.image_size
    return (size, size) if isinstance(size, int) else tuple(size)


def to_clip_images(images, size: tuple[int, int]):
    """``(B, 1, H, W)`` network output -> CLIP input ``(B, 3, h, w)`` (min-max, resize, grey normalisation)."""
    import torch.nn.functional as F

    flat = images.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    x = (images - lo) / (hi - lo).clamp_min(1e-6)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return ((x - CLIP_GREY_MEAN) / CLIP_GREY_STD).repeat(1, 3, 1, 1)


def encode_text_embeddings(clip_model, embeddings, tokens):
    """CLIP's text encoder on given token embeddings (``tokens`` only locate the end-of-text token)."""
    import torch.nn as nn
    from open_clip.transformer import text_global_pool

    cast = clip_model.transformer.get_cast_dtype()
    x = embeddings.to(cast) + clip_model.positional_embedding.to(cast)
    x = clip_model.transformer(x, attn_mask=clip_model.attn_mask)
    x = clip_model.ln_final(x)
    x = text_global_pool(x, tokens, clip_model.text_pool_type, eos_token_id=getattr(clip_model, "text_eos_id", None))
    if clip_model.text_projection is not None:
        x = clip_model.text_projection(x) if isinstance(clip_model.text_projection, nn.Linear) else x @ clip_model.text_projection
    return x


def _prompt_learner_class():
    import torch
    from torch import nn

    class PromptLearner(nn.Module):
        """Learnable HQ / LQ contexts (``n_ctx`` token embeddings each) in "X X ... X ." prompts."""

        def __init__(self, clip_model, tokenizer, n_ctx: int) -> None:
            super().__init__()
            width = clip_model.token_embedding.weight.shape[1]
            self.n_ctx = n_ctx
            self.ctx = nn.Parameter(torch.randn(2, n_ctx, width) * 0.02)  # 0 = HQ, 1 = LQ
            tokens = tokenizer([" ".join(["X"] * n_ctx) + "."] * 2)
            self.register_buffer("tokens", tokens, persistent=True)

        def forward(self, clip_model):
            with torch.no_grad():
                embedded = clip_model.token_embedding(self.tokens)
            # sequence: [SOT] ctx_1..ctx_n [.] [EOT] pad...
            x = torch.cat((embedded[:, :1], self.ctx.to(embedded.dtype), embedded[:, 1 + self.n_ctx :]), dim=1)
            return encode_text_embeddings(clip_model, x, self.tokens)

    return PromptLearner


def class_text_features(clip_model, tokenizer, class_names: list[str], n_ctx: int):
    import torch

    texts = [" ".join(["X"] * n_ctx) + f" {name}." for name in class_names]
    with torch.no_grad():
        return clip_model.encode_text(tokenizer(texts), normalize=True)


# ----------------------------------------------------------------------------------------- data


class _UHSRBatches:
    """Shuffled batches of a UHSR split: voxels for LRN, TFI targets, class indices."""

    def __init__(self, root: str, batch: int, seed: int) -> None:
        from training.datasets import UHSRDataset

        self.dataset = UHSRDataset(root, "train", window_planes=200)
        names = self.dataset.class_names()
        self.labels = sorted(names)
        self.class_names = [names[k] for k in self.labels]
        self.index_of = {label: i for i, label in enumerate(self.labels)}
        self.batch = batch
        self.rng = np.random.default_rng(seed)

    def steps_per_epoch(self) -> int:
        return max(1, -(-len(self.dataset) // self.batch))

    def epoch(self):
        import torch

        from edge.reconstruction.classical import tfi

        order = self.rng.permutation(len(self.dataset))
        for start in range(0, len(order), self.batch):
            samples = [self.dataset[int(i)] for i in order[start : start + self.batch]]
            planes = torch.from_numpy(np.stack([s.planes for s in samples]))
            tfis = torch.from_numpy(np.stack([tfi(s.planes) for s in samples]))[:, None]
            classes = torch.tensor([self.index_of.get(s.label, 0) for s in samples], dtype=torch.int64)
            yield planes, tfis, classes


def _hq_images(config: SpikeClipConfig, n: int, size: tuple[int, int], rng: np.random.Generator):
    """High-quality reference images ``(n, 1, h, w)`` in [0, 1]: ``--hq-dir`` files or procedural ones."""
    import torch
    from PIL import Image

    from training.datasets import natural_like_image

    images = []
    if config.hq_dir:
        files = sorted(p for p in Path(config.hq_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in --hq-dir {config.hq_dir}")
        for i in rng.integers(0, len(files), n):
            with Image.open(files[int(i)]) as im:
                grey = im.convert("L").resize(size[::-1], Image.BILINEAR)
            images.append(np.asarray(grey, dtype=np.float32) / 255.0)
    else:
        images = [natural_like_image(rng, *size) for _ in range(n)]
    return torch.from_numpy(np.stack(images))[:, None]


# ---------------------------------------------------------------------------------------- stages


def _stage_steps(config: SpikeClipConfig, epochs: int, per_epoch: int) -> int:
    total = epochs * per_epoch
    return total if config.max_steps_per_stage is None else min(total, config.max_steps_per_stage)


def _batches(data: _UHSRBatches, steps: int):
    done = 0
    while done < steps:
        for batch in data.epoch():
            if done >= steps:
                return
            done += 1
            yield batch


def run_spikeclip(config: SpikeClipConfig, clip_model=None, tokenizer=None) -> dict:
    """Run the three stages; ``clip_model``/``tokenizer`` override loading from ``config.clip_weights``."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from edge.reconstruction.models.checkpoints import load_strict, read_state_dict
    from edge.reconstruction.networks import build_network
    from firmware_io.atomic import write_text_atomic
    from training.fit import atomic_torch_save, plain_state_dict

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if clip_model is None:
        if not config.clip_weights:
            raise ValueError("--clip-weights PATH is required (CLIP weights cannot be downloaded here)")
        clip_model, tokenizer = load_clip(config.clip_model, config.clip_weights)
    clip_model.eval()
    for p in clip_model.parameters():
        p.requires_grad_(False)
    size = clip_image_size(clip_model)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    data = _UHSRBatches(config.data, config.batch, config.seed)
    rng = np.random.default_rng(config.seed + 17)
    lrn = build_network("lrn")
    if config.init:
        load_strict(lrn, read_state_dict(config.init), config.init)
    lrn.train()
    history: list[dict] = []
    t0 = time.monotonic()

    def record(stage: str, step: int, **values: float) -> None:
        row = {"stage": stage, "step": step, **{k: float(v) for k, v in values.items()}, "elapsed_s": round(time.monotonic() - t0, 2)}
        history.append(row)
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def bar(stage: str, steps: int):
        return tqdm(total=steps, desc=f"spikeclip {stage}", disable=not config.progress, mininterval=5.0)

    # 1. coarse: regress the TFI image
    per_epoch = data.steps_per_epoch()
    steps = _stage_steps(config, config.coarse_epochs, per_epoch)
    optimizer = torch.optim.Adam(lrn.parameters(), lr=config.lr)
    with bar("coarse", steps) as progress:
        for step, (planes, tfis, _) in enumerate(_batches(data, steps), 1):
            loss = F.l1_loss(lrn(lrn.prepare(planes)), tfis)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            record("coarse", step, loss=loss.item())
            progress.update(1)
    atomic_torch_save(plain_state_dict(lrn), out / "lrn_coarse.pt")

    # 2. prompt learning: HQ vs LQ through the frozen text encoder
    prompts = _prompt_learner_class()(clip_model, tokenizer, config.n_ctx)
    p_optimizer = torch.optim.Adam(prompts.parameters(), lr=config.prompt_lr)
    steps = _stage_steps(config, config.prompt_epochs, per_epoch)
    scale = clip_model.logit_scale.exp().detach()
    lrn.eval()
    with bar("prompt", steps) as progress:
        for step, (planes, tfis, _) in enumerate(_batches(data, steps), 1):
            with torch.no_grad():
                coarse = lrn(lrn.prepare(planes))
                lq = torch.cat((coarse, tfis))
                hq = _hq_images(config, len(planes), size, rng)
                feats = F.normalize(clip_model.encode_image(to_clip_images(torch.cat((hq, lq)), size)), dim=-1)
            text = F.normalize(prompts(clip_model), dim=-1)
            logits = scale * feats @ text.T
            target = torch.cat((torch.zeros(len(hq), dtype=torch.int64), torch.ones(len(lq), dtype=torch.int64)))
            loss = F.cross_entropy(logits, target)
            p_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            p_optimizer.step()
            accuracy = (logits.argmax(1) == target).float().mean()
            record("prompt", step, loss=loss.item(), accuracy=accuracy.item())
            progress.update(1)
    for p in prompts.parameters():
        p.requires_grad_(False)
    atomic_torch_save({"ctx": prompts.ctx.detach().clone(), "n_ctx": config.n_ctx}, out / "prompts.pt")

    # 3. fine: class InfoNCE + lambda x prompt loss
    lrn.train()
    with torch.no_grad():
        hq_lq_text = F.normalize(prompts(clip_model), dim=-1)
    class_text = class_text_features(clip_model, tokenizer, data.class_names, config.n_ctx)
    optimizer = torch.optim.Adam(lrn.parameters(), lr=config.lr)
    steps = _stage_steps(config, config.fine_epochs, per_epoch)
    with bar("fine", steps) as progress:
        for step, (planes, _tfis, classes) in enumerate(_batches(data, steps), 1):
            feats = F.normalize(clip_model.encode_image(to_clip_images(lrn(lrn.prepare(planes)), size)), dim=-1)
            class_loss = F.cross_entropy(scale * feats @ class_text.T, classes)
            prompt_loss = F.cross_entropy(scale * feats @ hq_lq_text.T, torch.zeros(len(planes), dtype=torch.int64))
            loss = class_loss + config.prompt_lambda * prompt_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            record("fine", step, loss=loss.item(), class_loss=class_loss.item(), prompt_loss=prompt_loss.item())
            progress.update(1)
    atomic_torch_save(plain_state_dict(lrn), out / "lrn_spikeclip.pt")
    summary = {
        "config": dataclasses.asdict(config),
        "classes": data.class_names,
        "train_samples": len(data.dataset),
        "hq_source": config.hq_dir or "procedural natural-like images (training.datasets)",
        "final": {stage: next((r for r in reversed(history) if r["stage"] == stage), None) for stage in ("coarse", "prompt", "fine")},
        "wall_s": round(time.monotonic() - t0, 1),
        "weights": str(out / "lrn_spikeclip.pt"),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    summary["history"] = history
    return summary


__all__ = ["SpikeClipConfig", "run_spikeclip", "load_clip", "to_clip_images",
           "encode_text_embeddings", "class_text_features", "CLIP_GREY_MEAN", "CLIP_GREY_STD"]
