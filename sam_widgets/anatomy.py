"""Look inside SAM: numbers and pictures computed from segment_anything's own modules.

Everything here is measured on the model object you pass (or built on torch's ``meta`` device,
which costs no memory and no time), never typed in from a paper or a blog:

- ``describe``: input size, patch grid, widths, windows and the padding they need, global blocks,
  the neck, embedding and mask sizes;
- ``param_counts`` and ``flop_counts``: per component, FLOPs from torch's FlopCounterMode (one
  multiply-add counts 2 FLOPs);
- ``attention_cost``: the attention FLOPs (QK^T and AV only) of a windowed block against a
  global block;
- ``block_costs``: whole blocks (projections, attention, MLP) measured by FlopCounterMode, and
  what an all-global encoder would cost; ``attention_memory``: the bytes of one block's
  attention maps, the real reason for windows;
- ``receptive_field``: which tokens can have reached a query token after each block;
- ``trace_pipeline``: every tensor shape from the image to the masks, recorded by forward hooks;
- ``decoder_attention`` and ``click_position_match``: what the decoder's output tokens look at,
  and how a click's positional code finds its place on the image grid;
- ``attention_map``: what one query patch attends to in a given block, captured with a forward
  hook and recomputed with the block's own weights and relative positions;
- ``preprocess_steps``: the image as the encoder receives it (resize, normalise, pad).

The figures commonly quoted about SAM, each with its source, are ``measure.QUOTED``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam

from ._images import as_rgb_uint8
from .architectures import SamConfig, build_sam, config_for

__all__ = [
    "Anatomy",
    "Stage",
    "describe",
    "stages",
    "param_counts",
    "flop_counts",
    "attention_cost",
    "block_costs",
    "attention_memory",
    "receptive_field",
    "trace_pipeline",
    "decoder_attention",
    "click_position_match",
    "attention_map",
    "preprocess_steps",
    "meta_model",
]


@dataclass(frozen=True)
class Anatomy:
    """The shape facts of one SAM model, read from its modules."""

    img_size: int  # pixels, the long side after resizing (the input is padded to a square)
    patch_size: int  # pixels per patch side
    grid: int  # tokens per side after patch embedding
    embed_dim: int  # channels per token in the encoder
    depth: int  # transformer blocks
    num_heads: int
    window_size: int  # tokens per window side in windowed blocks
    padded_grid: int  # grid padded to a multiple of the window size
    windows: int  # windows per image in a windowed block
    global_blocks: tuple[int, ...]  # blocks attending over the whole grid
    neck_channels: int  # channels of the image embedding
    embedding_shape: tuple[int, int, int]  # C x H x W of the image embedding
    low_res_mask: int  # side of the masks the decoder outputs, before upscaling
    encoder: str = "vit"  # "vit" (vit_b/l/h, micro) or "tiny_vit" (mobile_sam: see ``stages``)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stage:
    """One stage of an image encoder (``stages``): its blocks run at one grid size and width."""

    kind: str  # "convolution (MBConv)", "windowed attention" or "attention (ViT)"
    blocks: int
    width: int  # channels per token
    grid: int  # tokens per side
    heads: int  # 0 for convolutions
    window: int  # tokens per window side; 0: the whole grid or no attention


def meta_model(name_or_config: str | SamConfig) -> Sam:
    """The architecture on torch's meta device: real modules, no memory, no weights."""
    config = config_for(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return build_sam(config, device="meta")


def _model(model: Sam | str | SamConfig) -> Sam:
    return model if isinstance(model, Sam) else meta_model(model)


def _is_tiny_vit(enc: Any) -> bool:
    return hasattr(enc, "layers") and not hasattr(enc, "blocks")


def stages(model: Sam | str | SamConfig) -> tuple[Stage, ...]:
    """The image encoder's stages, read from its modules.

    MobileSAM's TinyViT (four: MBConv convolutions at 1/4 of the input, then windowed attention at
    1/8, 1/16, 1/16, each stage after the first entered through a patch-merging convolution); a
    ViT (vit_b/l/h, micro) has one stage of ``depth`` blocks on one grid, windowed or global.
    """
    sam = _model(model)
    enc = sam.image_encoder
    if not _is_tiny_vit(enc):
        a = describe(sam)
        return (Stage("attention (ViT)", a.depth, a.embed_dim, a.grid, a.num_heads, a.window_size),)
    out = []
    grid = enc.img_size // 4  # the stem: two stride-2 convolutions
    for layer in enc.layers:
        first = layer.blocks[0]
        if hasattr(first, "attn"):
            out.append(
                Stage(
                    "windowed attention",
                    len(layer.blocks),
                    first.attn.qkv.in_features,
                    grid,
                    first.attn.num_heads,
                    first.attn.window,
                )
            )
        else:
            out.append(
                Stage("convolution (MBConv)", len(layer.blocks), first.conv1.c.in_channels, grid, 0, 0)
            )
        if layer.downsample is not None:
            grid = math.ceil(grid / layer.downsample.conv2.c.stride[0])
    return tuple(out)


def describe(model: Sam | str | SamConfig) -> Anatomy:
    """Shape facts of ``model`` (a Sam, a model name, or a SamConfig), read from its modules.

    For MobileSAM's TinyViT (``encoder="tiny_vit"``), whose grid and width change from stage to
    stage (``stages``), the fields describe its last stage, the one the neck reads: ``patch_size``
    is the input pixels per final token (16, as in SAM's ViTs), ``depth`` counts the blocks of all
    stages, and no block attends globally.
    """
    sam = _model(model)
    enc = sam.image_encoder
    if _is_tiny_vit(enc):
        st = stages(sam)
        last = st[-1]
        neck = enc.neck[-2].out_channels
        emb = sam.prompt_encoder.image_embedding_size
        padded = math.ceil(last.grid / last.window) * last.window
        return Anatomy(
            img_size=enc.img_size,
            patch_size=enc.img_size // last.grid,
            grid=last.grid,
            embed_dim=last.width,
            depth=sum(x.blocks for x in st),
            num_heads=last.heads,
            window_size=last.window,
            padded_grid=padded,
            windows=(padded // last.window) ** 2,
            global_blocks=(),
            neck_channels=neck,
            embedding_shape=(neck, emb[0], emb[1]),
            low_res_mask=4 * emb[0],
            encoder="tiny_vit",
        )
    patch = enc.patch_embed.proj
    grid = enc.img_size // patch.stride[0]
    window = max(b.window_size for b in enc.blocks)
    padded = math.ceil(grid / window) * window if window else grid
    neck = enc.neck[-2].out_channels  # the last conv before the final LayerNorm2d
    emb = sam.prompt_encoder.image_embedding_size
    return Anatomy(
        img_size=enc.img_size,
        patch_size=patch.stride[0],
        grid=grid,
        embed_dim=patch.out_channels,
        depth=len(enc.blocks),
        num_heads=enc.blocks[0].attn.num_heads,
        window_size=window,
        padded_grid=padded,
        windows=(padded // window) ** 2 if window else 1,
        global_blocks=tuple(i for i, b in enumerate(enc.blocks) if b.window_size == 0),
        neck_channels=neck,
        embedding_shape=(neck, emb[0], emb[1]),
        low_res_mask=4 * emb[0],
    )


def param_counts(model: Sam | str | SamConfig) -> dict[str, int]:
    """Parameters per component (the encoder's parts, the prompt encoder, the decoder's parts)."""
    sam = _model(model)
    enc, dec = sam.image_encoder, sam.mask_decoder

    def n(*modules: Any) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    if _is_tiny_vit(enc):  # TinyViT: stages, no position embedding, a classifier SAM never runs
        encoder = {
            "encoder.patch_embed": n(enc.patch_embed),
            "encoder.pos_embed": 0,
            "encoder.windowed_blocks": n(enc.layers),
            "encoder.global_blocks": 0,
            "encoder.neck": n(enc.neck),
            "encoder.classifier_unused": n(enc.norm_head, enc.head),
        }
    else:
        windowed = [b for b in enc.blocks if b.window_size > 0]
        global_ = [b for b in enc.blocks if b.window_size == 0]
        encoder = {
            "encoder.patch_embed": n(enc.patch_embed),
            "encoder.pos_embed": enc.pos_embed.numel() if enc.pos_embed is not None else 0,
            "encoder.windowed_blocks": n(*windowed),
            "encoder.global_blocks": n(*global_),
            "encoder.neck": n(enc.neck),
        }
    counts = {
        **encoder,
        "prompt_encoder": n(sam.prompt_encoder),
        "decoder.transformer": n(dec.transformer),
        "decoder.upscaling": n(dec.output_upscaling),
        "decoder.hypernetworks": n(dec.output_hypernetworks_mlps),
        "decoder.iou_head": n(dec.iou_prediction_head),
        "decoder.tokens": n(dec.iou_token, dec.mask_tokens),
    }
    assert sum(counts.values()) == n(sam), "every parameter is counted once"
    return counts


def flop_counts(model: Sam | str | SamConfig) -> dict[str, float]:
    """FLOPs of one image through the encoder and of one click through the decoder, by part.

    Counted by torch's FlopCounterMode on the meta device (a multiply-add is 2 FLOPs); only
    matrix products and convolutions are counted, as FlopCounterMode does. Keys: ``encoder``
    (total), ``encoder.patch_embed``, ``encoder.windowed_blocks``, ``encoder.global_blocks``,
    ``encoder.neck`` (they add up to the total), ``prompt_encoder+decoder`` (one point, 3 masks).
    For MobileSAM's TinyViT, ``encoder.windowed_blocks`` is its four stages (the MBConv stage and
    the patch mergings included) and ``encoder.global_blocks`` is 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    sam = _model(model)
    config_like = describe(sam)
    on = {"device": "meta"} if next(sam.parameters()).is_meta else {"device": sam.device}
    x = torch.zeros(1, 3, config_like.img_size, config_like.img_size, **on)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        sam.image_encoder(x)
    by_module = {k: float(sum(v.values())) for k, v in counter.get_flop_counts().items()}
    if config_like.encoder == "tiny_vit":  # stages, not blocks: all of them windowed or convolutions
        top = type(sam.image_encoder).__name__
        out = {
            "encoder": float(counter.get_total_flops()),
            "encoder.patch_embed": by_module.get(f"{top}.patch_embed", 0.0),
            "encoder.windowed_blocks": sum(
                by_module.get(f"{top}.layers.{i}", 0.0) for i in range(len(sam.image_encoder.layers))
            ),
            "encoder.global_blocks": 0.0,
            "encoder.neck": by_module.get(f"{top}.neck", 0.0),
        }
        config_like = replace(config_like, depth=0)  # the ViT loop below adds nothing
    else:
        out = {}
    out = out or {
        "encoder": float(counter.get_total_flops()),
        "encoder.patch_embed": by_module.get("ImageEncoderViT.patch_embed", 0.0),
        "encoder.windowed_blocks": 0.0,
        "encoder.global_blocks": 0.0,
        "encoder.neck": by_module.get("ImageEncoderViT.neck", 0.0),
    }
    for i in range(config_like.depth):
        kind = "global" if i in config_like.global_blocks else "windowed"
        out[f"encoder.{kind}_blocks"] += by_module.get(f"ImageEncoderViT.blocks.{i}", 0.0)
    # The prompt encoder branches on label values, which meta tensors do not have: count the
    # small prompt encoder and decoder (4 M parameters) on the CPU. FLOPs depend on shapes only.
    prompt_encoder, decoder = sam.prompt_encoder, sam.mask_decoder
    if on["device"] == "meta":
        prompt_encoder = copy.deepcopy(sam.prompt_encoder).to_empty(device="cpu").requires_grad_(False)
        decoder = copy.deepcopy(sam.mask_decoder).to_empty(device="cpu").requires_grad_(False)
    dev = {"device": "cpu"} if on["device"] == "meta" else on
    c, h, w = config_like.embedding_shape
    emb = torch.zeros(1, c, h, w, **dev)
    pts = torch.zeros(1, 1, 2, **dev), torch.ones(1, 1, dtype=torch.int, **dev)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        sparse, dense = prompt_encoder(points=pts, boxes=None, masks=None)
        decoder(emb, prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True)
    out["prompt_encoder+decoder"] = float(counter.get_total_flops())
    return out


def attention_cost(model: Sam | str | SamConfig) -> dict[str, float]:
    """Attention FLOPs (QK^T and AV products, 2 FLOPs a multiply-add) per block, window vs global.

    A windowed block attends within ``windows`` windows of ``window_size^2`` tokens (padded grid);
    a global block over all ``grid^2`` tokens: cost grows with the square of the tokens attended.
    """
    a = describe(model)
    tokens_w = a.window_size**2
    window_block = 2 * 2 * a.windows * tokens_w * tokens_w * a.embed_dim
    global_block = 2 * 2 * (a.grid**2) ** 2 * a.embed_dim
    return {
        "window_block": float(window_block),
        "global_block": float(global_block),
        "ratio": global_block / window_block,
    }


def block_costs(model: Sam | str | SamConfig) -> dict[str, float]:
    """FLOPs of whole encoder blocks, windowed against global, measured by FlopCounterMode.

    A block is qkv and output projections, attention and the MLP; only attention grows with the
    tokens attended, so a global block costs far less than ``attention_cost``'s ratio suggests.
    Returns ``window_block`` and ``global_block`` (FLOPs of one block of each kind), ``ratio``,
    ``encoder`` (the whole encoder), ``all_global_encoder`` (the encoder if every block were
    global) and ``all_global_increase`` (``all_global_encoder / encoder - 1``).
    """
    a = describe(model)
    flops = flop_counts(model)
    n_global = len(a.global_blocks)
    n_window = a.depth - n_global
    if not n_global or not n_window:
        raise ValueError(
            f"this model has {n_global} global and {n_window} windowed blocks: nothing to compare."
        )
    window_block = flops["encoder.windowed_blocks"] / n_window
    global_block = flops["encoder.global_blocks"] / n_global
    all_global = flops["encoder"] + n_window * (global_block - window_block)
    return {
        "window_block": window_block,
        "global_block": global_block,
        "ratio": global_block / window_block,
        "encoder": flops["encoder"],
        "all_global_encoder": all_global,
        "all_global_increase": all_global / flops["encoder"] - 1,
    }


def attention_memory(model: Sam | str | SamConfig, bytes_per_value: int = 4) -> dict[str, float]:
    """Bytes of the attention maps (heads x queries x keys) one block materialises, per image.

    ``global_block``: heads x grid^4 values (vit_b fp32: 12 x 4096^2 x 4 B = 805 MB);
    ``window_block``: windows x heads x window^4 values; ``ratio``: global / window. Stock
    segment_anything makes each map more than once (logits, relative positions, softmax), so
    its peak is a multiple of this.
    """
    a = describe(model)
    glob = a.num_heads * (a.grid**2) ** 2 * bytes_per_value
    if not a.window_size:
        return {"global_block": float(glob), "window_block": float(glob), "ratio": 1.0}
    window = a.windows * a.num_heads * (a.window_size**2) ** 2 * bytes_per_value
    return {"global_block": float(glob), "window_block": float(window), "ratio": glob / window}


def receptive_field(model: Sam | str | SamConfig, query: tuple[int, int]) -> np.ndarray:
    """Which tokens can have influenced token ``query`` (row, col) after each encoder block.

    Returns a bool array (depth, grid, grid): entry k is the set after block k. A windowed block
    mixes tokens only inside its (fixed, never shifted) windows; a global block mixes all; the
    MLP is per token. So the set stays the query's window until the first global block.
    """
    a = describe(model)
    r, c = query
    if not (0 <= r < a.grid and 0 <= c < a.grid):
        raise ValueError(f"query {query} is outside the {a.grid}x{a.grid} token grid.")
    reach = np.zeros((a.grid, a.grid), bool)
    reach[r, c] = True
    out = np.zeros((a.depth, a.grid, a.grid), bool)
    for k in range(a.depth):
        if k in a.global_blocks or not a.window_size:
            reach = np.ones_like(reach)
        else:
            w = a.window_size
            new = np.zeros_like(reach)
            for r0 in range(0, a.grid, w):
                for c0 in range(0, a.grid, w):
                    if reach[r0 : r0 + w, c0 : c0 + w].any():
                        new[r0 : r0 + w, c0 : c0 + w] = True
            reach = new
        out[k] = reach
    return out


def trace_pipeline(
    model: Sam | str | SamConfig, image_hw: tuple[int, int], point: tuple[float, float]
) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor shape from an image to its masks, recorded by forward hooks on the modules.

    ``image_hw``: (height, width) of the original image in pixels; ``point``: one positive click
    (X, Y) in those pixels. The image encoder runs on the meta device (shapes, no memory, no
    time; the shapes do not depend on the weights); prompt encoder and decoder on the CPU with
    uninitialised weights. Returns (stage, shape) pairs in the order the data flows, ending with
    the 3 candidate masks at the image's size.
    """
    from segment_anything.utils.transforms import ResizeLongestSide

    sam = meta_model(model) if not isinstance(model, Sam) else model
    meta = copy.deepcopy(sam).to("meta") if not next(sam.parameters()).is_meta else sam
    a = describe(meta)
    enc = meta.image_encoder
    shapes: list[tuple[str, tuple[int, ...]]] = [("image (H, W, RGB)", (*image_hw, 3))]
    h, w = image_hw
    scale = a.img_size / max(h, w)
    resized = (int(h * scale + 0.5), int(w * scale + 0.5))
    shapes.append(("resized, normalised, padded", (1, 3, a.img_size, a.img_size)))
    hooks = []

    def record(name: str, pick=lambda out: out):
        def hook(_module, _args, out):
            shapes.append((name, tuple(pick(out).shape)))

        return hook

    hooks.append(enc.patch_embed.register_forward_hook(record("patch embedding (tokens, B x H x W x C)")))
    windowed = [i for i in range(a.depth) if i not in a.global_blocks]
    if windowed and a.window_size:
        hooks.append(
            enc.blocks[windowed[0]].attn.register_forward_pre_hook(
                lambda _m, args: shapes.append(
                    (f"block {windowed[0]} attention input: padded, cut into windows", tuple(args[0].shape))
                )
            )
        )
    for i in sorted({0, *a.global_blocks[:1]}):
        kind = "global" if i in a.global_blocks else f"windows of {a.window_size}"
        hooks.append(enc.blocks[i].register_forward_hook(record(f"encoder block {i} ({kind})")))
    hooks.append(enc.blocks[-1].register_forward_hook(record(f"encoder block {a.depth - 1} (last)")))
    hooks.append(enc.neck.register_forward_hook(record("neck: image embedding")))
    try:
        with torch.no_grad():
            enc(torch.zeros(1, 3, a.img_size, a.img_size, device="meta"))
    finally:
        for handle in hooks:
            handle.remove()
    # The prompt side branches on label values, which meta tensors do not have: run it on the CPU.
    pe = copy.deepcopy(meta.prompt_encoder).to_empty(device="cpu").requires_grad_(False)
    dec = copy.deepcopy(meta.mask_decoder).to_empty(device="cpu").requires_grad_(False)
    xy = ResizeLongestSide(a.img_size).apply_coords(np.array([point], float), image_hw)
    coords = torch.as_tensor(xy, dtype=torch.float32)[None]
    labels = torch.ones(1, 1, dtype=torch.int)
    hooks = [
        dec.transformer.register_forward_hook(record("two-way transformer: tokens", lambda out: out[0])),
        dec.output_upscaling.register_forward_hook(record("upscaled image embedding")),
    ]
    try:
        with torch.no_grad():
            sparse, dense = pe(points=(coords, labels), boxes=None, masks=None)
            shapes.append(("prompt tokens (click + padding point)", tuple(sparse.shape)))
            shapes.append(("dense prompt embedding (no mask)", tuple(dense.shape)))
            emb = torch.zeros(1, *a.embedding_shape)
            low, _iou = dec(emb, pe.get_dense_pe(), sparse, dense, multimask_output=True)
    finally:
        for handle in hooks:
            handle.remove()
    shapes.append(("low-res mask logits (3 candidates)", tuple(low.shape)))
    up = torch.nn.functional.interpolate(low, (a.img_size, a.img_size), mode="bilinear", align_corners=False)
    up = up[..., : resized[0], : resized[1]]
    full = torch.nn.functional.interpolate(up, image_hw, mode="bilinear", align_corners=False)
    shapes.append(("masks at the image's size", tuple(full.shape)))
    return shapes


def _decoder_inputs(sam: Sam, image: Any, points: np.ndarray, labels: np.ndarray):
    """Image embedding, positional encoding and prompt tokens for ``points`` (N x 2, X Y pixels)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    rgb = as_rgb_uint8(image)
    dev = sam.device
    x = torch.as_tensor(preprocess_steps(sam, rgb)["padded"]).permute(2, 0, 1)[None].to(dev)
    xy = ResizeLongestSide(sam.image_encoder.img_size).apply_coords(np.asarray(points, float), rgb.shape[:2])
    coords = torch.as_tensor(xy, dtype=torch.float32, device=dev)[None]
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.int, device=dev)[None]
    with torch.no_grad():
        emb = sam.image_encoder(x.to(next(sam.image_encoder.parameters()).dtype)).float()
        sparse, dense = sam.prompt_encoder(points=(coords, lab), boxes=None, masks=None)
    return emb, sam.prompt_encoder.get_dense_pe(), sparse, dense


def decoder_attention(
    sam: Sam, image: Any, points: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Where each of the decoder's tokens looks in the image, in its last token-to-image attention.

    ``points``: N x 2 (X, Y) pixels of ``image``; ``labels``: N (1 on the object, 0 not). Captured
    with a forward pre-hook on ``mask_decoder.transformer.final_attn_token_to_image`` and
    recomputed with that module's own projections. Returns (maps, low-res logits 4 x S x S,
    predicted IoUs 4): maps is token name -> an embedding-grid (h x w) array averaged over heads,
    each summing to 1, for "IoU token", "mask 0".."mask 3" and "point 0".. (the prompt tokens,
    padding point included).
    """
    emb, pe, sparse, dense = _decoder_inputs(sam, image, points, labels)
    attn = sam.mask_decoder.transformer.final_attn_token_to_image
    captured: dict[str, torch.Tensor] = {}

    def grab(_module, args, kwargs):
        q, k = (kwargs["q"], kwargs["k"]) if "q" in kwargs else args[:2]
        captured.update(q=q, k=k)

    handle = attn.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            low, iou = sam.mask_decoder.predict_masks(emb, pe, sparse, dense)
    finally:
        handle.remove()
    with torch.no_grad():
        q = attn._separate_heads(attn.q_proj(captured["q"]), attn.num_heads)
        k = attn._separate_heads(attn.k_proj(captured["k"]), attn.num_heads)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1).mean(1)[0]
    h, w = emb.shape[-2:]
    n_mask = sam.mask_decoder.num_mask_tokens
    names = ["IoU token", *(f"mask {i}" for i in range(n_mask))]
    names += [f"point {i}" for i in range(weights.shape[0] - len(names))]
    maps = {name: weights[i].reshape(h, w).cpu().numpy() for i, name in enumerate(names)}
    return maps, low[0].cpu().numpy(), iou[0].cpu().numpy()


def click_position_match(sam: Sam, point: tuple[float, float], image_hw: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of a click's positional code with the code of every image-embedding cell.

    ``point``: (X, Y) in pixels of an image of ``image_hw`` (height, width). The prompt encoder
    codes the click with random Fourier features of its position; the image's keys get the same
    features of each grid cell (``get_dense_pe``). Returns an h x w array in [-1, 1]: it peaks
    where the click is, which is how attention can find the click's place without being told.
    """
    from segment_anything.utils.transforms import ResizeLongestSide

    size = sam.image_encoder.img_size
    xy = ResizeLongestSide(size).apply_coords(np.array([point], float), image_hw)
    pe_layer = sam.prompt_encoder.pe_layer
    with torch.no_grad():
        coords = torch.as_tensor(xy + 0.5, dtype=torch.float32, device=sam.device)[None]
        click = pe_layer.forward_with_coords(coords, (size, size))[0, 0]  # C
        grid = sam.prompt_encoder.get_dense_pe()[0]  # C x h x w
        sim = torch.nn.functional.cosine_similarity(grid, click[:, None, None], dim=0)
    return sim.cpu().numpy()


def preprocess_steps(model: Sam | str | SamConfig, image: Any) -> dict[str, np.ndarray]:
    """The image on its way into the encoder, as SamPredictor does it.

    Returns ``resized`` (uint8, long side = img_size), ``normalized`` (float32 HxWx3, per-channel
    (x - mean) / std) and ``padded`` (float32 img_size x img_size x 3, zeros bottom and right).
    """
    from segment_anything.utils.transforms import ResizeLongestSide

    sam = _model(model)
    rgb = as_rgb_uint8(image)
    size = sam.image_encoder.img_size
    resized = ResizeLongestSide(size).apply_image(rgb)
    if sam.pixel_mean.is_meta:  # a meta model has no buffer values: use the builder's constants
        mean = np.array(SamConfig.pixel_mean, np.float32).reshape(1, 1, 3)
        std = np.array(SamConfig.pixel_std, np.float32).reshape(1, 1, 3)
    else:
        mean = sam.pixel_mean.detach().cpu().float().view(1, 1, 3).numpy()
        std = sam.pixel_std.detach().cpu().float().view(1, 1, 3).numpy()
    normalized = (resized.astype(np.float32) - mean) / std
    padded = np.zeros((size, size, 3), np.float32)
    padded[: resized.shape[0], : resized.shape[1]] = normalized
    return {"resized": resized, "normalized": normalized, "padded": padded}


def attention_map(sam: Sam, image: Any, block: int, query: tuple[int, int]) -> np.ndarray:
    """Attention of one query token over the token grid in encoder block ``block``.

    ``query`` is (row, col) on the token grid (``describe(sam).grid`` per side). Returns a
    grid x grid float array, averaged over heads. A global block's map sums to 1; a windowed
    block's is zero outside the query's window (and sums to less than 1 at the image's right and
    bottom edges, where part of the weight goes to the window padding). Captured with a forward
    pre-hook on ``blocks[block].attn`` and recomputed with that module's own qkv projection and
    decomposed relative positions.
    """
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    a = describe(sam)
    if not 0 <= block < a.depth:
        raise ValueError(f"block must be in 0..{a.depth - 1}, got {block}.")
    r, c = query
    if not (0 <= r < a.grid and 0 <= c < a.grid):
        raise ValueError(f"query {query} is outside the {a.grid}x{a.grid} token grid.")
    attn_module = sam.image_encoder.blocks[block].attn
    captured: dict[str, torch.Tensor] = {}
    handle = attn_module.register_forward_pre_hook(lambda _m, args: captured.setdefault("x", args[0]))
    try:
        x = torch.as_tensor(preprocess_steps(sam, image)["padded"]).permute(2, 0, 1)[None]
        x = x.to(sam.device, next(sam.image_encoder.parameters()).dtype)
        with torch.no_grad():
            sam.image_encoder(x)  # already normalised and padded, as Sam.preprocess makes it
    finally:
        handle.remove()
    tokens = captured["x"]  # (B*windows, h, w, C) for a windowed block, (1, grid, grid, C) global
    window = sam.image_encoder.blocks[block].window_size
    if window:
        per_row = a.padded_grid // window
        index = (r // window) * per_row + (c // window)
        tokens = tokens[index : index + 1]
        qr, qc = r % window, c % window
    else:
        qr, qc = r, c
    _, h, w, _ = tokens.shape
    heads = attn_module.num_heads
    with torch.no_grad():
        qkv = attn_module.qkv(tokens).reshape(1, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, _v = qkv.reshape(3, heads, h * w, -1).unbind(0)  # (heads, h*w, head_dim)
        logits = (q * attn_module.scale) @ k.transpose(-2, -1)
        if attn_module.use_rel_pos:
            logits = add_decomposed_rel_pos(
                logits, q, attn_module.rel_pos_h, attn_module.rel_pos_w, (h, w), (h, w)
            )
        weights = logits.float().softmax(-1)[:, qr * w + qc].mean(0).reshape(h, w).cpu().numpy()
    out = np.zeros((a.padded_grid, a.padded_grid), np.float32)
    if window:
        r0, c0 = (r // window) * window, (c // window) * window
        out[r0 : r0 + window, c0 : c0 + window] = weights
    else:
        out[:h, :w] = weights
    return out[: a.grid, : a.grid]
