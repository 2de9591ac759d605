"""STIR (spatio-temporal interactive reconstruction, NeurIPS 2024) as one torch module.

One definition serves inference, training and export. Layer attribute names follow the published
model so that an official checkpoint (after ``edge.reconstruction.models.checkpoints`` strips its ``module.``
prefix) loads with ``strict=True``; the misspelt ``decorder_*`` names are part of that layout.

Structure (61-plane model, 5,107,960 parameters; the 41-plane variant has 5,078,698):

- Three sub-streams of the window (``[0:21]``, ``[20:41]``, ``[40:61]``; the 41-plane variant uses
  ``[0:15]``, ``[13:28]``, ``[26:41]``), each embedded as nested-window TFP channels (the full
  sub-stream, then trimmed by 2 planes at each end while the trim stays under half its length)
  concatenated with a learned residual block (conv3x3+BN+ReLU, conv3x3+BN, 1x1 shortcut, ReLU) to
  11 channels. The sub-streams share weights and run as one batch of ``3B``.
- Encoder: PReLU convs to 16/24/32/64/96 channels at 1, 1/2, 1/4, 1/8, 1/16, one residual block per
  level below full resolution.
- At 1/16: cross channel attention (Restormer style, 4 heads) with the centre stream as query and
  the side streams as keys/values, output ``[ffn(attn_0), centre, ffn(attn_2)]`` (288 channels).
- Decoder, coarse to fine: upsample flows (transposed conv), hidden state (transposed conv) and
  image (bilinear), backward-warp the side streams with ``grid_sample`` (bilinear, border,
  align_corners=True), fuse, predict residual flows and an image. The full-resolution level warps
  the 16-channel embeddings with three groups of motion fields and predicts only the image.

H and W must be multiples of 16: ``STIR.forward`` pads the bottom and right edges by replicating
the last row/column and crops the result back, so any size is accepted.

Input: ``(B, T, H, W)`` float spike planes (0/1), upright. Output: ``(B, 1, H, W)`` unclamped
image (the published evaluation does not clamp; the published training clamps each level's image to
[0, 1] before the loss, see ``STIR.forward_levels``).

Design: the warp casts features and sampling grid to float32 whatever the network's precision:
in fp16 the normalised grid coordinates of a 1280-wide image would be off by a third of a pixel, in
bf16 (8 significant bits) by several pixels. The nested TFP means are taken in float32 too (one cast of the
sub-streams): half-precision means upcast each trimmed window on their own, which on a CPU cost more
than the convolutions they feed.
The Restormer layer norm is written over the channel axis of the NCHW tensor (no transposes), which
keeps channels_last memory layouts intact and exports to plain ONNX ops.

``build(window_planes, state)`` makes a fresh network of the variant asked for, or of the one a
checkpoint was trained as (read off its embedding block's input channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edge.reconstruction.models.checkpoints import CheckpointError

STIR_DEFAULT_WINDOW = 61
STIR_PAD_MULTIPLE = 16
STIR_CHANNELS = (16, 24, 32, 64, 96)
STIR_HIDDEN = 8
STIR_MOTION_GROUPS = 3
STIR_RESIDUAL_CHANNELS = 11
STIR_PARAMETERS = {61: 5_107_960, 41: 5_078_698}


@dataclass(frozen=True)
class StirVariant:
    """Window length and the half-open plane ranges of the three sub-streams."""

    window_planes: int
    substreams: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

    @property
    def substream_planes(self) -> int:
        start, stop = self.substreams[0]
        return stop - start


STIR_VARIANTS: dict[int, StirVariant] = {
    61: StirVariant(61, ((0, 21), (20, 41), (40, 61))),
    41: StirVariant(41, ((0, 15), (13, 28), (26, 41))),
}


def tfp_trims(substream_planes: int) -> list[int]:
    """Planes trimmed from each end for the nested TFP channels: ``[0, 2, 4, ...]`` while ``trim < n // 2``."""
    half = substream_planes // 2
    return [0] + [t for t in range(2, half, 2)]


def nested_tfp(planes: torch.Tensor) -> torch.Tensor:
    """``(B, n, H, W)`` -> ``(B, len(tfp_trims(n)), H, W)``: means over windows trimmed symmetrically, taken in
    float32 whatever the planes' dtype (then cast back to it)."""
    if planes.dtype != torch.float32:  # one cast of the planes, not one per mean (half-precision means upcast)
        return nested_tfp(planes.float()).to(planes.dtype)
    n = planes.shape[1]
    channels = [planes[:, t : n - t].mean(dim=1, keepdim=True) for t in tfp_trims(n)]
    return torch.cat(channels, dim=1)


def pad_to_multiple(x: torch.Tensor, multiple: int = STIR_PAD_MULTIPLE) -> tuple[torch.Tensor, int, int]:
    """Replicate-pad the bottom and right edges so H and W are multiples of ``multiple``."""
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, int(height), int(width)


# --------------------------------------------------------------------------------------- blocks


class _ConvAct(nn.Module):
    """Conv2d (``same`` padding for odd kernels) followed by an optional activation, held in ``net``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, act: nn.Module | None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, bias=True)]
        if act is not None:
            layers.append(act)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _PlainResBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with 3x3 convs; kept in ``conv_block``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            _ConvAct(channels, channels, 3, 1, nn.ReLU()),
            _ConvAct(channels, channels, 3, 1, None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class _ResStack(nn.Module):
    """A chain of ``_PlainResBlock`` in ``net`` (one block everywhere in STIR)."""

    def __init__(self, channels: int, n_blocks: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(*[_PlainResBlock(channels) for _ in range(n_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _EmbeddingResBlock(nn.Module):
    """Sub-stream embedding: relu(bn2(conv2(relu(bn1(conv1 x)))) + conv3 x)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.conv3 = nn.Conv2d(c_in, c_out, 1, 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.conv3(x))


class _Encoder(nn.Module):
    def __init__(self, c_in: int, chs: tuple[int, ...]) -> None:
        super().__init__()
        self.conv0 = _ConvAct(c_in, chs[0], 7, 1, nn.PReLU())
        self.conv1 = _ConvAct(chs[0], chs[1], 3, 2, nn.PReLU())
        self.resblocks1 = _ResStack(chs[1])
        self.conv2 = _ConvAct(chs[1], chs[2], 3, 2, nn.PReLU())
        self.resblocks2 = _ResStack(chs[2])
        self.conv3 = _ConvAct(chs[2], chs[3], 3, 2, nn.PReLU())
        self.resblocks3 = _ResStack(chs[3])
        self.conv4 = _ConvAct(chs[3], chs[4], 3, 2, nn.PReLU())
        self.resblocks4 = _ResStack(chs[4])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        f1 = self.resblocks1(self.conv1(self.conv0(x)))
        f2 = self.resblocks2(self.conv2(f1))
        f3 = self.resblocks3(self.conv3(f2))
        f4 = self.resblocks4(self.conv4(f3))
        return f4, f3, f2, f1


# ---------------------------------------------------------------------------------- attention


class _LayerNormParams(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


class _ChannelLayerNorm(nn.Module):
    """Layer norm over the channel axis of ``(B, C, H, W)`` (eps 1e-5, biased variance)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = _LayerNormParams(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=1, keepdim=True)
        scale = self.body.weight.view(1, -1, 1, 1)
        shift = self.body.bias.view(1, -1, 1, 1)
        return centred * torch.rsqrt(var + 1e-5) * scale + shift


class _GatedFeedForward(nn.Module):
    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


def _channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, temperature: torch.Tensor) -> torch.Tensor:
    """Transposed (channel) attention per head with L2-normalised q, k over pixels."""
    b, c, h, w = q.shape
    q = F.normalize(q.reshape(b, heads, c // heads, h * w), dim=-1)
    k = F.normalize(k.reshape(b, heads, c // heads, h * w), dim=-1)
    v = v.reshape(b, heads, c // heads, h * w)
    attn = (q @ k.transpose(-2, -1)) * temperature
    return (attn.softmax(dim=-1) @ v).reshape(b, c, h, w)


class _CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.temperature1 = nn.Parameter(torch.ones(heads, 1, 1))
        self.temperature2 = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv1 = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.kv2 = nn.Conv2d(dim, dim * 2, 1, bias=False)
        # groups=dim on the query (two channels per group) is how the published model is built.
        self.q_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, 1, 1, groups=dim, bias=False)
        self.kv1_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, 1, 1, groups=dim * 2, bias=False)
        self.kv2_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, 1, 1, groups=dim * 2, bias=False)

    def forward(self, x: torch.Tensor, side0: torch.Tensor, side2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2 = self.q_dwconv(self.q(x)).chunk(2, dim=1)
        k1, v1 = self.kv1_dwconv(self.kv1(side0)).chunk(2, dim=1)
        k2, v2 = self.kv2_dwconv(self.kv2(side2)).chunk(2, dim=1)
        out1 = _channel_attention(q1, k1, v1, self.num_heads, self.temperature1)
        out2 = _channel_attention(q2, k2, v2, self.num_heads, self.temperature2)
        return out1, out2


class _CrossTransformer(nn.Module):
    def __init__(self, dim: int, heads: int = 4, expansion: float = 2.66) -> None:
        super().__init__()
        self.norm1 = _ChannelLayerNorm(dim)
        self.norm_kv1 = _ChannelLayerNorm(dim)
        self.norm_kv2 = _ChannelLayerNorm(dim)
        self.attn = _CrossAttention(dim, heads)
        self.norm2 = _ChannelLayerNorm(dim)
        self.ffn = _GatedFeedForward(dim, expansion)

    def forward(self, centre: torch.Tensor, side0: torch.Tensor, side2: torch.Tensor) -> torch.Tensor:
        out1, out2 = self.attn(self.norm1(centre), self.norm_kv1(side0), self.norm_kv2(side2))
        return torch.cat((self.ffn(self.norm2(out1)), centre, self.ffn(self.norm2(out2))), dim=1)


# ------------------------------------------------------------------------------------ decoder


def _deconv(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=True)


def _conv_prelu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=True), nn.PReLU(c_out))


class _DimReduce(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _conv_prelu(c_in, c_in)
        self.conv2 = _conv_prelu(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def backward_warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``features`` at ``pixel + flow`` (bilinear, border padding, align_corners=True), in float32."""
    b, _, h, w = flow.shape
    flow = flow.float()
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, w).expand(b, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, h, 1).expand(b, h, w)
    gx = xs + flow[:, 0] / ((w - 1.0) / 2.0)
    gy = ys + flow[:, 1] / ((h - 1.0) / 2.0)
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(features.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(features.dtype)


def _upsample_image(img: torch.Tensor) -> torch.Tensor:
    return F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False)


class _TopDecoder(nn.Module):
    """1/16 level: fuse the attention output, predict two flows and an image."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.convrelu = _conv_prelu(chs * 3, chs * 3)
        self.resblocks = _ResStack(chs * 3)
        self.predict_img_flow = nn.Conv2d(chs * 3, 5, 3, 1, 1, bias=True)

    def forward(self, fused: torch.Tensor):
        hidden = self.resblocks(self.convrelu(fused))
        out = self.predict_img_flow(hidden)
        return out[:, 4:5], hidden, out[:, 0:2], out[:, 2:4]


class _Decoder(nn.Module):
    """Middle levels: upsample, warp the side streams, fuse, predict residual flows and an image."""

    def __init__(self, chs_last: int, chs: int, hidden: int) -> None:
        super().__init__()
        self.deconv_flow = _deconv(4, 4)
        self.deconv_hidden = _deconv(3 * chs_last, hidden)
        self.convrelu = _DimReduce(chs * 3 + 4 + 1 + hidden, chs * 3)
        self.resblocks = _ResStack(chs * 3)
        self.predict_img_flow = nn.Conv2d(chs * 3, 5, 3, 1, 1, bias=True)

    def forward(self, img_last, hidden_last, flow0_last, flow1_last, c0, c1, c2):
        upflow = self.deconv_flow(torch.cat((flow0_last, flow1_last), dim=1))
        uphidden = self.deconv_hidden(hidden_last)
        upimg = _upsample_image(img_last)
        upflow0, upflow1 = upflow[:, 0:2], upflow[:, 2:4]
        x = torch.cat((upimg, c1, backward_warp(c0, upflow0), backward_warp(c2, upflow1), uphidden, upflow0, upflow1), dim=1)
        hidden = self.resblocks(self.convrelu(x))
        out = self.predict_img_flow(hidden)
        return out[:, 4:5], hidden, out[:, 0:2] + upflow0, out[:, 2:4] + upflow1, upflow0, upflow1


class _BottomDecoder(nn.Module):
    """Full resolution: warp the embeddings with ``groups`` motion fields, predict the image."""

    def __init__(self, chs_last: int, chs: int, hidden: int, groups: int) -> None:
        super().__init__()
        self.N_group = groups
        extra = 4 * (groups - 1)
        if groups > 1:
            self.predict_flow_group = nn.Conv2d(chs_last * 3, extra, 3, 1, 1, bias=True)
            self.deconv_flow_group = _deconv(extra, extra)
        self.deconv_flow = _deconv(4, 4)
        self.deconv_hidden = _deconv(3 * chs_last, hidden)
        self.convrelu = _DimReduce(chs * 2 * groups + chs + 4 * groups + 1 + hidden, chs * 3)
        self.resblocks = _ResStack(chs * 3)
        self.predict_img = nn.Conv2d(chs * 3, 1, 3, 1, 1, bias=True)

    def forward(self, img_last, hidden_last, flow0_last, flow1_last, upflow_last, c0, c1, c2):
        warped_groups: list[torch.Tensor] = []
        group_flows: list[torch.Tensor] = []
        if self.N_group > 1:
            residual = self.predict_flow_group(hidden_last)
            flow_groups = residual + torch.cat([upflow_last] * (self.N_group - 1), dim=1)
            up_groups = self.deconv_flow_group(flow_groups)
            group_flows.append(up_groups)
            for g in range(self.N_group - 1):
                warped_groups.append(backward_warp(c0, up_groups[:, 4 * g : 4 * g + 2]))
                warped_groups.append(backward_warp(c2, up_groups[:, 4 * g + 2 : 4 * g + 4]))
        upflow = self.deconv_flow(torch.cat((flow0_last, flow1_last), dim=1))
        uphidden = self.deconv_hidden(hidden_last)
        upimg = _upsample_image(img_last)
        upflow0, upflow1 = upflow[:, 0:2], upflow[:, 2:4]
        parts = [upimg, c1, backward_warp(c0, upflow0), backward_warp(c2, upflow1), *warped_groups,
                 uphidden, upflow0, upflow1, *group_flows]
        hidden = self.resblocks(self.convrelu(torch.cat(parts, dim=1)))
        return self.predict_img(hidden), upflow0, upflow1


# -------------------------------------------------------------------------------------- model


class StirLevels(NamedTuple):
    """All outputs of one pass, finest first: images at 1, 1/2, 1/4, 1/8, 1/16 and the upsampled
    flows (side stream 0, side stream 2) used at 1, 1/2, 1/4, 1/8. Cropped back only at level 0."""

    images: tuple[torch.Tensor, ...]
    flows: tuple[tuple[torch.Tensor, torch.Tensor], ...]


class STIR(nn.Module):
    """STIR for a ``window_planes``-plane window (61, or 41 for the retrained variant)."""

    def __init__(self, window_planes: int = STIR_DEFAULT_WINDOW) -> None:
        super().__init__()
        if window_planes not in STIR_VARIANTS:
            raise ValueError(f"STIR exists for windows of {sorted(STIR_VARIANTS)} planes, not {window_planes}")
        self.variant = STIR_VARIANTS[window_planes]
        self.window_planes = window_planes
        n_sub = self.variant.substream_planes
        dim_embed = len(tfp_trims(n_sub)) + STIR_RESIDUAL_CHANNELS  # 16 (61-plane) or 15 (41-plane)
        chs = STIR_CHANNELS
        self.resnet = _EmbeddingResBlock(n_sub, STIR_RESIDUAL_CHANNELS)
        self.encoder = _Encoder(dim_embed, chs)
        self.transformer = _CrossTransformer(chs[-1], heads=4, expansion=2.66)
        self.decorder_5nd = _TopDecoder(chs[-1])
        self.decorder_4nd = _Decoder(chs[-1], chs[-2], STIR_HIDDEN)
        self.decorder_3rd = _Decoder(chs[-2], chs[-3], STIR_HIDDEN)
        self.decorder_2nd = _Decoder(chs[-3], chs[-4], STIR_HIDDEN)
        self.decorder_1st = _BottomDecoder(chs[-4], dim_embed, STIR_HIDDEN, STIR_MOTION_GROUPS)

    def _check(self, planes: torch.Tensor) -> None:
        if planes.ndim != 4 or planes.shape[1] != self.window_planes:
            raise ValueError(f"STIR-{self.window_planes} takes planes (B, {self.window_planes}, H, W), got {tuple(planes.shape)}")

    def forward_levels(self, planes: torch.Tensor) -> StirLevels:
        """Run on ``(B, T, H, W)``; returns every level (see ``StirLevels``), level 0 cropped to H x W."""
        self._check(planes)
        x, height, width = pad_to_multiple(planes)
        b = x.shape[0]
        streams = [x[:, start:stop] for start, stop in self.variant.substreams]
        stacked = torch.cat(streams, dim=0)  # (3B, n, H, W): the three sub-streams share weights
        embed = torch.cat((torch.cat([nested_tfp(s) for s in streams], dim=0), self.resnet(stacked)), dim=1)
        f4, f3, f2, f1 = self.encoder(embed)
        thirds = [b, b, b]  # explicit sizes: torch.export proves three parts for any (dynamic) batch
        c0_4, c1_4, c2_4 = f4.split(thirds)
        c0_3, c1_3, c2_3 = f3.split(thirds)
        c0_2, c1_2, c2_2 = f2.split(thirds)
        c0_1, c1_1, c2_1 = f1.split(thirds)
        e0, e1, e2 = embed.split(thirds)

        img4, hid4, fl0_4, fl1_4 = self.decorder_5nd(self.transformer(c1_4, c0_4, c2_4))
        img3, hid3, fl0_3, fl1_3, up0_3, up1_3 = self.decorder_4nd(img4, hid4, fl0_4, fl1_4, c0_3, c1_3, c2_3)
        img2, hid2, fl0_2, fl1_2, up0_2, up1_2 = self.decorder_3rd(img3, hid3, fl0_3, fl1_3, c0_2, c1_2, c2_2)
        img1, hid1, fl0_1, fl1_1, up0_1, up1_1 = self.decorder_2nd(img2, hid2, fl0_2, fl1_2, c0_1, c1_1, c2_1)
        img0, up0_0, up1_0 = self.decorder_1st(img1, hid1, fl0_1, fl1_1, torch.cat((up0_1, up1_1), dim=1), e0, e1, e2)
        img0 = img0[:, :, :height, :width]
        return StirLevels(
            images=(img0, img1, img2, img3, img4),
            flows=((up0_0, up1_0), (up0_1, up1_1), (up0_2, up1_2), (up0_3, up1_3)),
        )

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """``(B, T, H, W)`` spike planes -> ``(B, 1, H, W)`` image at the window's centre plane."""
        return self.forward_levels(planes).images[0]

    @staticmethod
    def prepare(planes: torch.Tensor) -> torch.Tensor:
        """Upright 0/1 planes (any dtype) -> the network input (float32 planes, no voxelisation)."""
        return planes if planes.dtype.is_floating_point else planes.float()


def window_of_state(state: Mapping[str, Any]) -> int | None:
    """The variant a state_dict was trained as (its sub-stream length), or None when it does not say."""
    if "resnet.conv1.weight" not in state:
        return None
    sub = int(state["resnet.conv1.weight"].shape[1])
    window = next((w for w, v in STIR_VARIANTS.items() if v.substream_planes == sub), None)
    if window is None:
        raise CheckpointError(f"STIR checkpoint has {sub}-plane sub-streams; known variants: "
                              f"{ {w: v.substream_planes for w, v in STIR_VARIANTS.items()} }")
    return window


def build(window_planes: int | None = None, state: Mapping[str, Any] | None = None) -> STIR:
    """A fresh STIR: the ``window_planes`` variant, else the one ``state`` was trained as, else 61 planes."""
    if window_planes is None and state is not None:
        window_planes = window_of_state(state)
    return STIR(window_planes or STIR_DEFAULT_WINDOW)


__all__ = ["STIR", "STIR_VARIANTS", "StirVariant", "StirLevels", "build", "nested_tfp", "pad_to_multiple",
           "backward_warp", "tfp_trims", "window_of_state", "STIR_DEFAULT_WINDOW", "STIR_PARAMETERS"]
