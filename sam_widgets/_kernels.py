"""Small compute kernels shared by the fast paths (``fast``) and MobileSAM's encoder (``tiny_vit``).

Layer 1 (facts and kernels: no model state), so that ``tiny_vit`` can use them without importing
``fast`` (layer 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__: list[str] = []  # private helpers


#: oneDNN's linear with a fused epilogue (torch's inductor uses it for CPU bf16): on a CPU with
#: AMX/AVX512_BF16 it runs the encoder's bf16 products ~1.3x faster than ``F.linear`` (whose bias
#: add is a separate pass) and the GELU inside the product, on the fp32 accumulator.
_MKLDNN_LINEAR = (
    getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available()
    else None
)


def _linear(x: torch.Tensor, lin: torch.nn.Module, gelu: bool = False) -> torch.Tensor:
    """``lin(x)`` (then exact GELU if ``gelu``), by oneDNN for a bf16 CPU inference call.

    Same products and the same rounding to bf16 at the end; the bias add and the GELU happen on
    the fp32 accumulator instead of after rounding (at least as accurate). Anything else (fp32,
    a GPU, autograd, a hooked or non-Linear module): the module's own code.
    """
    if (
        _MKLDNN_LINEAR is not None
        and x.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and type(lin) is torch.nn.Linear
        and lin.weight.dtype == torch.bfloat16
        and not (torch.is_grad_enabled() and (x.requires_grad or lin.weight.requires_grad))
        and not _has_hooks(lin)
    ):
        return _MKLDNN_LINEAR(x, lin.weight, lin.bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    y = lin(x)
    return F.gelu(y) if gelu else y


def _has_hooks(module: torch.nn.Module) -> bool:
    # Private attributes of nn.Module, stable since torch 1.x: a hook must see stock's calls.
    from torch.nn.modules import module as _m

    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or _m._global_forward_hooks
        or _m._global_forward_pre_hooks
    )
