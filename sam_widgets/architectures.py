"""Every SAM architecture sam-widgets knows, in one place: its numbers, how to build it, how to
recognise it in a state dict.

- ``CONFIGS``: name -> ``SamConfig`` (vit_b, vit_l, vit_h: the official SAM v1 models; micro: the
  small SAM of ``sam_widgets.micro``);
- ``build_sam(config)``: segment_anything's own ``Sam`` at random init (``device="meta"``: the
  structure only, no memory);
- ``identify_architecture(state_dict)``: which of ``CONFIGS`` a state dict holds, in words.

Adding a model (e.g. ``mobile_sam``): give it a ``SamConfig`` in ``CONFIGS``; if its image encoder
is not segment_anything's ``ImageEncoderViT``, set ``SamConfig.encoder`` to a new kind and add a
builder ``(config) -> nn.Module`` for that kind to ``ENCODERS`` (and, if its state dict has no
``image_encoder.patch_embed.proj.weight``, a branch to ``identify_architecture``), as mobile_sam
does (``"tiny_vit"``). Weights
(checkpoints.REGISTRY) and loading (models.load_sam) read the name from here.

Importing this module does not import torch; ``build_sam`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from segment_anything.modeling import Sam

__all__ = [
    "SamConfig",
    "CONFIGS",
    "OFFICIAL",
    "MODEL_NAMES",
    "ENCODERS",
    "config_for",
    "build_sam",
    "identify_architecture",
]


@dataclass(frozen=True)
class SamConfig:
    """Architecture numbers of a SAM model (the arguments of segment_anything's builder).

    ``encoder`` names the kind of image encoder (a key of ``ENCODERS``); the ``encoder_*``,
    ``patch_size``, ``window_size`` and ``mlp_ratio`` numbers are those of a ``"vit"`` encoder.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    encoder: str = "vit"

    @property
    def embedding_size(self) -> int:
        """Side of the image-embedding grid in tokens (64 for the official models)."""
        return self.img_size // self.patch_size


#: The official SAM v1 models, smallest first (their weights: ``checkpoints.REGISTRY``).
OFFICIAL = ("vit_b", "vit_l", "vit_h")

CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
    # micro: 128 wide, 6 blocks, 4 heads; input 256x256, patch 16 -> 16x16 tokens, every block
    # global (windows would save nothing on 16x16 tokens); low-res masks 64x64; a decoder of width
    # 128. Trained here: sam_widgets/micro/MODEL_CARD.md.
    "micro": SamConfig(
        128,
        6,
        4,
        tuple(range(6)),
        img_size=256,
        window_size=0,
        prompt_embed_dim=128,
        decoder_mlp_dim=512,
        decoder_num_heads=4,
        iou_head_hidden_dim=128,
    ),  # fmt: skip
}

# mobile_sam (MobileSAM): sam_widgets.tiny_vit's TinyViT encoder (its own numbers:
# tiny_vit.MOBILE_SAM_ENCODER) with SAM's prompt encoder and mask decoder, vit_b's numbers for those.
CONFIGS["mobile_sam"] = replace(CONFIGS["vit_b"], encoder="tiny_vit")

#: Every model name ``load_sam`` takes (besides ``"auto"``).
MODEL_NAMES: tuple[str, ...] = tuple(CONFIGS)


def config_for(name: str) -> SamConfig:
    """The ``SamConfig`` of a model name; a ``ValueError`` naming the known ones otherwise."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(CONFIGS)}.") from None


# ----------------------------------------------------------------------------- building


def _vit_encoder(c: SamConfig) -> Any:
    """segment_anything's ``ImageEncoderViT`` with the numbers of ``c``."""
    import torch
    from segment_anything.modeling import ImageEncoderViT

    return ImageEncoderViT(
        depth=c.encoder_depth,
        embed_dim=c.encoder_embed_dim,
        img_size=c.img_size,
        mlp_ratio=c.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=c.encoder_num_heads,
        patch_size=c.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(c.encoder_global_attn_indexes),
        window_size=c.window_size,
        out_chans=c.prompt_embed_dim,
    )


def _tiny_vit_encoder(c: SamConfig) -> Any:
    """MobileSAM's TinyViT (``sam_widgets.tiny_vit``); its numbers are its own, not ``c``'s."""
    from .tiny_vit import mobile_sam_encoder

    return mobile_sam_encoder(c)


#: Image-encoder builders by ``SamConfig.encoder``: a new kind of encoder is added here.
ENCODERS: dict[str, Callable[[SamConfig], Any]] = {"vit": _vit_encoder, "tiny_vit": _tiny_vit_encoder}


def build_sam(config: SamConfig, *, device: str | torch.device = "cpu") -> Sam:
    """Build ``Sam`` from segment_anything's classes at random init, exactly as its builder does.

    ``device="meta"`` builds the structure without allocating memory (for shape checks and fast
    loading with ``load_state_dict(assign=True)``).
    """
    import torch
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if config.encoder not in ENCODERS:
        raise ValueError(f"encoder={config.encoder!r}: sam-widgets builds {', '.join(ENCODERS)}.")
    c = config
    with torch.device(device):
        sam = Sam(
            image_encoder=ENCODERS[c.encoder](c),
            prompt_encoder=PromptEncoder(
                embed_dim=c.prompt_embed_dim,
                image_embedding_size=(c.embedding_size, c.embedding_size),
                input_image_size=(c.img_size, c.img_size),
                mask_in_chans=c.mask_in_chans,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=c.decoder_depth,
                    embedding_dim=c.prompt_embed_dim,
                    mlp_dim=c.decoder_mlp_dim,
                    num_heads=c.decoder_num_heads,
                ),
                transformer_dim=c.prompt_embed_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=c.iou_head_hidden_dim,
            ),
            pixel_mean=list(c.pixel_mean),
            pixel_std=list(c.pixel_std),
        )
    return sam.eval()


# ----------------------------------------------------------------------------- recognising


def identify_architecture(state_dict: dict) -> str:
    """Name the architecture a state dict holds, from its shapes, in words a user can act on.

    Returns e.g. ``"vit_l (1024 wide, 24 blocks)"`` (the first word is a key of ``CONFIGS``), or a
    description for unknown shapes.
    """
    if (
        "image_encoder.layers.0.blocks.0.conv1.c.weight" in state_dict
        and "image_encoder.neck.0.weight" in state_dict
    ):
        return "mobile_sam (TinyViT encoder)"
    w = state_dict.get("image_encoder.patch_embed.proj.weight")
    if w is None:
        return "not a SAM state dict (no image_encoder.patch_embed.proj.weight)"
    width = int(w.shape[0])
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for name, c in CONFIGS.items():
        if c.encoder == "vit" and (c.encoder_embed_dim, c.encoder_depth) == (width, depth):
            return f"{name} ({width} wide, {depth} blocks)"
    return f"an unknown SAM variant ({width} wide, {depth} blocks)"
