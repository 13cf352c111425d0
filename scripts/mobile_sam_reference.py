"""Regenerate tests/data/mobile_sam_keys.json and mobile_sam_reference_out.npy from MobileSAM's own code.

    python scripts/mobile_sam_reference.py /path/to/MobileSAM   # a checkout of ChaoningZhang/MobileSAM

Runs the published ``mobile_sam/modeling/tiny_vit_sam.py`` (its timm imports stubbed: only
DropPath (identity at drop rate 0), to_2tuple, trunc_normal_ and register_model are used) inside
segment_anything's ``Sam`` as ``build_sam_vit_t`` builds it; writes the state-dict keys, shapes and
dtypes, and the encoder's output on tests/test_tiny_vit.py's seeded weights and input.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _stub_timm() -> None:
    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: x if isinstance(x, tuple) else (x, x)
    layers.trunc_normal_ = lambda t, std=1.0: nn.init.trunc_normal_(t, std=std)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    models = types.ModuleType("timm.models")
    for name, mod in {
        "timm": types.ModuleType("timm"),
        "timm.models": models,
        "timm.models.layers": layers,
        "timm.models.registry": registry,
    }.items():
        sys.modules[name] = mod


def main(repo: str) -> None:
    _stub_timm()
    spec = importlib.util.spec_from_file_location(
        "tiny_vit_sam", Path(repo) / "mobile_sam" / "modeling" / "tiny_vit_sam.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    sam = Sam(
        image_encoder=module.TinyViT(
            img_size=1024,
            in_chans=3,
            num_classes=1000,
            embed_dims=[64, 128, 160, 320],
            depths=[2, 2, 6, 2],
            num_heads=[2, 4, 5, 10],
            window_sizes=[7, 7, 14, 7],
            mlp_ratio=4.0,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=4.0,
            local_conv_size=3,
            layer_lr_decay=0.8,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()
    sd = sam.state_dict()
    keys = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()]
    path = ROOT / "tests" / "data" / "mobile_sam_keys.json"
    source = json.loads(path.read_text())["source"] if path.is_file() else f"build_sam_vit_t of {repo}"
    head = {"source": source, "count": len(keys), "numel": int(sum(v.numel() for v in sd.values()))}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items()]
    body = ",\n".join("  " + json.dumps(e) for e in keys)
    path.write_text("{\n" + ",\n".join(lines) + ',\n "keys": [\n' + body + "\n ]\n}\n")

    sys.path.insert(0, str(ROOT / "tests"))
    from test_tiny_vit import SUBSAMPLE, reference_input, seeded_state_dict

    enc = sam.image_encoder
    enc.load_state_dict(seeded_state_dict(enc.state_dict()))
    enc.eval()  # the published code gathers its attention biases here
    with torch.no_grad():
        out = enc(reference_input())
    np.save(
        ROOT / "tests" / "data" / "mobile_sam_reference_out.npy", out[SUBSAMPLE].numpy().astype(np.float32)
    )
    print(f"wrote {path} ({len(keys)} keys) and the reference output {tuple(out.shape)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
