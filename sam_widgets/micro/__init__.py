"""micro: a small SAM trained here on synthetic scenes, shipped inside the package.

Built from segment_anything's own classes (ImageEncoderViT, PromptEncoder, MaskDecoder,
TwoWayTransformer, Sam), so SamPredictor and SamAutomaticMaskGenerator run their real code on it.
It is not SAM: see MODEL_CARD.md for what it was trained on and what it cannot do.

Importing this module does not import torch; ``build_micro`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sam_widgets.checkpoints import load_state_dict
from sam_widgets.errors import CheckpointError
from sam_widgets.models import SamConfig, build_sam

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

__all__ = ["MICRO_CONFIG", "WEIGHTS_PATH", "MicroWeightsMissingError", "build_micro"]

#: The architecture numbers. Input 256x256, patch 16 -> 16x16 tokens, all global attention;
#: low-res masks 64x64.
MICRO_CONFIG = SamConfig(
    img_size=256,
    patch_size=16,
    encoder_embed_dim=128,
    encoder_depth=6,
    encoder_num_heads=4,
    mlp_ratio=4.0,
    window_size=0,  # 16x16 tokens: windows would not save anything, every block is global
    encoder_global_attn_indexes=(0, 1, 2, 3, 4, 5),
    prompt_embed_dim=128,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=512,
    decoder_num_heads=4,
    iou_head_hidden_dim=128,
)

#: The shipped weights (fp16 state dict, loads with ``torch.load(weights_only=True)``).
WEIGHTS_PATH: Path = Path(__file__).with_name("micro_sam.pt")


class MicroWeightsMissingError(CheckpointError, FileNotFoundError):
    """The micro weights file is missing (a source checkout without the trained file)."""


def build_micro(weights: bool = True) -> Sam:
    """Build the micro SAM in eval mode on the cpu, in fp32.

    Args:
        weights: True loads the shipped weights from WEIGHTS_PATH; False keeps the random
            initialisation of the same architecture (for timing and shape tests).

    Raises:
        MicroWeightsMissingError: weights=True and WEIGHTS_PATH does not exist.
    """

    sam = build_sam(MICRO_CONFIG)
    if weights:
        if not WEIGHTS_PATH.is_file():
            raise MicroWeightsMissingError(
                f"micro weights not found at {WEIGHTS_PATH}. Train them with "
                "`python -m sam_widgets.micro.train --steps 2000 --out "
                f"{WEIGHTS_PATH}` (see sam_widgets/micro/MODEL_CARD.md), or reinstall the package."
            )
        state = load_state_dict(WEIGHTS_PATH)  # weights_only, with a clear error for a damaged file
        sam.load_state_dict({k: v.float() for k, v in state.items()})
    return sam.eval()
