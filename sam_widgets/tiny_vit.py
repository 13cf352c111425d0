"""MobileSAM's image encoder: a TinyViT, written here from MobileSAM's published architecture.

MobileSAM (Zhang et al. 2023, "Faster Segment Anything", Apache-2.0) distils SAM ViT-H's image
encoder into a TinyViT-5M-shaped encoder and keeps SAM's own prompt encoder and mask decoder. This
module is our own code for that encoder; its parameter and buffer names and shapes are those of the
official ``mobile_sam.pt`` (MobileSAM's ``mobile_sam/modeling/tiny_vit_sam.py``, ``build_sam_vit_t``),
so that file loads with ``strict=True`` (``tests/data/mobile_sam_keys.json`` holds the key list).

At 1024 x 1024 input (B = batch, shapes per image)::

    image            3 x 1024 x 1024
    patch_embed      two 3x3 stride-2 convs (+BN, GELU between)       -> 64 x 256 x 256
    layers[0]        2 MBConv blocks (1x1 up x4, 3x3 depthwise, 1x1 down), then
                     PatchMerging 64 -> 128, stride 2                   -> 128 x 128 x 128
    layers[1]        2 TinyViT blocks, 4 heads, windows 7x7, then
                     PatchMerging 128 -> 160, stride 2                  -> 160 x 64 x 64
    layers[2]        6 TinyViT blocks, 5 heads, windows 14x14, then
                     PatchMerging 160 -> 320, stride 1 (as published)   -> 320 x 64 x 64
    layers[3]        2 TinyViT blocks, 10 heads, windows 7x7            -> 320 x 64 x 64
    neck             1x1 conv 320 -> 256, LayerNorm2d, 3x3 conv, LayerNorm2d -> 256 x 64 x 64

Every attention head is 32 wide. A TinyViT block is: windowed attention (its LayerNorm inside,
applied after zero padding to whole windows, as published: padded tokens take part as keys) with a
learned bias per head and (|dy|, |dx|) offset; a residual; a 3x3 depthwise conv (+BN); an MLP
(LayerNorm, 4x, GELU) with a residual. ``norm_head`` and ``head`` (TinyViT's ImageNet classifier)
are unused by SAM but are in the official file, so they are kept for a strict load.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from ._kernels import _linear  # oneDNN (GELU fused) for bf16 CPU inference

__all__ = ["TinyViT", "MOBILE_SAM_ENCODER", "mobile_sam_encoder", "bias_index"]

#: MobileSAM's encoder numbers (``build_sam_vit_t`` at MobileSAM commit f706ad9c).
MOBILE_SAM_ENCODER = dict(
    img_size=1024,
    embed_dims=(64, 128, 160, 320),
    depths=(2, 2, 6, 2),
    num_heads=(2, 4, 5, 10),  # the first stage is convolutional: its 2 heads are unused
    window_sizes=(7, 7, 14, 7),  # likewise the first
    merge_strides=(2, 2, 1),  # PatchMerging after stages 0, 1, 2 (published: stride 1 into 320)
    mlp_ratio=4.0,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
    out_chans=256,
    num_classes=1000,
)


class Conv2dBN(nn.Sequential):
    """Conv2d without bias, then BatchNorm2d (keys ``c.*``, ``bn.*``).

    In eval mode the norm is folded into the conv (one pass over the map instead of two):
    weight * gamma / sqrt(var + eps), bias beta - mean * gamma / sqrt(var + eps).
    """

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, pad: int = 0, groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        """conv, BN (then exact GELU if ``gelu``). In CPU inference the GELU runs in oneDNN's
        convolution epilogue, on the accumulator (one pass over the map fewer: ~2x faster for the
        MBConv's 256-channel maps, measured)."""
        if self.training:
            y = self.bn(self.c(x))
            return F.gelu(y) if gelu else y
        c, bn = self.c, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # C_out
        weight = c.weight * scale.view(-1, 1, 1, 1).to(c.weight.dtype)
        bias = (bn.bias - bn.running_mean * scale).to(c.weight.dtype)
        if gelu and _fusable(x, weight):
            pad, stride, dil = list(c.padding), list(c.stride), list(c.dilation)
            return _CONV_POINTWISE(x, weight, bias, pad, stride, dil, c.groups, "gelu", [], "none")
        y = F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)
        return F.gelu(y) if gelu else y


#: oneDNN's convolution with a fused epilogue (what torch's inductor uses on the CPU).
_CONV_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


def _fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether conv + GELU can run as one oneDNN call: CPU, no autograd, same float dtype."""
    return (
        _CONV_POINTWISE is not None
        and torch.backends.mkldnn.is_available()
        and x.device.type == "cpu"
        and x.dtype == weight.dtype
        and x.dtype in (torch.float32, torch.bfloat16)
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


class PatchEmbed(nn.Module):
    """B x 3 x H x W -> B x dim x H/4 x W/4: two 3x3 stride-2 convs, GELU between."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, dim // 2, 3, 2, 1), nn.GELU(), Conv2dBN(dim // 2, dim, 3, 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, act, conv2 = self.seq
        if type(act) is nn.GELU and act.approximate == "none":
            return conv2(conv1(x, gelu=True))
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual on B x C x H x W: 1x1 conv up, 3x3 depthwise, 1x1 conv down, + input, GELU."""

    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2dBN(hidden, dim)
        nn.init.zeros_(self.conv3.bn.weight)  # as published: each block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x, gelu=True)  # B, 4C, H, W
        y = self.conv2(y, gelu=True)
        return F.gelu(x + self.conv3(y))


class PatchMerging(nn.Module):
    """B x H x W x C (or B x C x H x W) -> B x H' x W' x C_out: 1x1 conv, GELU, 3x3 depthwise conv
    (stride 1 or 2), GELU, 1x1 conv."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        if channels_last:
            x = x.permute(0, 3, 1, 2)  # B, C, H, W
        x = self.conv1(x, gelu=True)
        x = self.conv2(x, gelu=True)
        return self.conv3(x).permute(0, 2, 3, 1)  # B, H', W', C_out


@functools.lru_cache(maxsize=16)
def bias_index(window: int, device: torch.device) -> torch.Tensor:
    """N x N (N = window^2) index into a window's per-offset biases.

    Token i of a window sits at (i // window, i % window); the pair (i, j) reads the bias of
    offset (|dy|, |dx|), stored at |dy| * window + |dx| (the order the published code numbers
    them in). Computed, not a buffer: nothing to restore after loading onto the meta device.
    """
    yx = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    offset = (yx[:, :, None] - yx[:, None, :]).abs()  # 2, N, N
    return (offset[0] * window + offset[1]).to(device)


class Attention(nn.Module):
    """Multi-head self-attention inside windows of ``window x window`` tokens, with its own
    LayerNorm and a learned bias per head and (|dy|, |dx|) offset (``attention_biases``)."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window = window
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # per head: q, k, v side by side
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))

    def bias(self) -> torch.Tensor:
        """heads x N x N additive attention bias, N = window^2."""
        return self.attention_biases[:, bias_index(self.window, self.attention_biases.device)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x Hp x Wp x C (whole windows) -> same. The norm and the projections act per token,
        so they run on the map; only q, k, v are cut into windows, and only the heads' output
        is put back."""
        b, hp, wp, c = x.shape
        ws, heads, hd = self.window, self.num_heads, self.head_dim
        nh, nw = hp // ws, wp // ws
        qkv = _linear(self.norm(x), self.qkv).view(b, nh, ws, nw, ws, heads, 3, hd)
        qkv = qkv.permute(6, 0, 1, 3, 5, 2, 4, 7).reshape(3, b * nh * nw, heads, ws * ws, hd)
        q, k, v = qkv.unbind(0)  # each: windows, heads, N, head_dim
        # Explicit: torch's fused attention with this bias as a mask measured ~1.5x slower in bf16.
        attn = (q * hd**-0.5) @ k.transpose(-2, -1) + self.bias().to(q.dtype)  # windows, heads, N, N
        out = attn.softmax(dim=-1) @ v  # windows, heads, N, head_dim
        out = out.view(b, nh, nw, heads, ws, ws, hd).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        return _linear(out, self.proj)


class Mlp(nn.Module):
    """LayerNorm, Linear dim -> hidden, GELU, Linear hidden -> dim."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(_linear(self.norm(x), self.fc1, gelu=True), self.fc2)


class TinyViTBlock(nn.Module):
    """B x H x W x C -> same: windowed attention + residual, 3x3 depthwise conv, MLP + residual."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, local_conv_size: int):
        super().__init__()
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window
        # Zero-pad to whole windows *before* the attention's LayerNorm (as published).
        y = F.pad(x, (0, 0, 0, (-w) % ws, 0, (-h) % ws))  # B, Hp, Wp, C
        x = x + self.attn(y)[:, :h, :w]
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # depthwise conv, channels first
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on B x C x H x W, then PatchMerging to B x H' x W' x C'."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x, channels_last=False)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks on B x H x W x C, then (not in the last stage) PatchMerging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        local_conv_size: int,
        out_dim: int | None,
        stride: int,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = None if out_dim is None else PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x, channels_last=True)


class TinyViT(nn.Module):
    """The TinyViT image encoder of MobileSAM: B x 3 x img_size^2 -> B x out_chans x img_size/16 ^2.

    Defaults are MobileSAM's (``MOBILE_SAM_ENCODER``). ``img_size`` is read by SamPredictor.
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        merge_strides: tuple[int, ...] = (2, 2, 1),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
        num_classes: int = 1000,
    ):
        super().__init__()
        stages = len(depths)
        if not (len(embed_dims) == len(num_heads) == len(window_sizes) == stages == len(merge_strides) + 1):
            raise ValueError(
                "embed_dims, depths, num_heads, window_sizes need one entry per stage, merge_strides one less"
            )
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.layers = nn.ModuleList()
        for i in range(stages):
            out_dim = embed_dims[i + 1] if i + 1 < stages else None
            stride = merge_strides[i] if i + 1 < stages else 1
            if i == 0:
                layer = ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, out_dim, stride)
            else:
                layer = BasicLayer(
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    local_conv_size,
                    out_dim,
                    stride,
                )
            self.layers.append(layer)
        # TinyViT's classifier: unused by SAM, kept so the official file loads strictly.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """As published: Linear weights truncated normal (std 0.02), biases 0; LayerNorm 1, 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Convolutions run channels-last in memory, so the B x H x W x C token maps of stages 1-3
        # go in and out of them without copies.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))  # B, 64, 256, 256
        x = self.layers[0](x)  # B, 128, 128, 128 (channels last from here)
        for layer in self.layers[1:]:
            x = layer(x)  # B, 64, 64, 160 -> B, 64, 64, 320 -> B, 64, 64, 320
        return self.neck(x.permute(0, 3, 1, 2))  # B, 256, 64, 64


def mobile_sam_encoder(*_config: object) -> TinyViT:
    """MobileSAM's encoder at random init (the numbers of ``MOBILE_SAM_ENCODER``)."""
    return TinyViT(**MOBILE_SAM_ENCODER)
