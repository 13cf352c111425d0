"""micro: a small SAM trained here on synthetic scenes, shipped inside the package.

Built from segment_anything's own classes (ImageEncoderViT, PromptEncoder, MaskDecoder,
TwoWayTransformer, Sam), so SamPredictor and SamAutomaticMaskGenerator run their real code on it.
It is not SAM: see MODEL_CARD.md for what it was trained on and what it cannot do.
Its architecture is ``sam_widgets.architectures.CONFIGS["micro"]``; this package holds its
weights (``build_micro``), its data generator (``data``), training (``train``) and evaluation.

Importing this module does not import torch; ``build_micro`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sam_widgets.architectures import CONFIGS, build_sam
from sam_widgets.checkpoints import load_state_dict
from sam_widgets.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

__all__ = ["WEIGHTS_PATH", "MicroWeightsMissingError", "build_micro"]

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

    sam = build_sam(CONFIGS["micro"])
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
