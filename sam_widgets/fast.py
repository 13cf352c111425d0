"""Fast paths: the same Sam and weights, computed in another order, in less time and memory.

``enable_fast(sam)`` swaps the class of some of segment_anything's modules, per instance, for a
subclass that keeps every parameter, so the module tree and the state-dict keys stay the official
ones; ``disable_fast(sam)`` swaps them back. What changes is the order of the arithmetic, so the
results differ from stock in the last bits (fp32: image embeddings within ~1e-6 relative, masks
the same but for pixels whose logit is ~0; measured and tested in tests/test_fast.py):

- image encoder ``Attention`` -> ``FastEncoderAttention``: torch's ``scaled_dot_product_attention``
  with the decomposed relative-position term as an additive bias, built for a few query rows at
  a time. Stock materialises the whole (heads, N, N) attention of a global block several times
  (vit_b: 12x4096x4096 floats = 805 MB each); here at most ``chunk_bytes`` of it exists at once.
- image encoder ``Block`` -> ``FastBlock``: windowed attention one band of windows at a time,
  no qkv or output projection of the window padding, the MLP in chunks of tokens.
- mask decoder cross-attention -> ``FastDecoderAttention``: the few prompt tokens are projected
  instead of the 4096 image tokens (products reassociated: (x Wk^T) q = x (Wk^T q); softmax rows
  sum to one). With ``FastTwoWayAttentionBlock`` (image tokens + positional encoding formed once
  per block, not twice), vit_b's decoder drops from 3.6 to 2.0 GFLOP per click.
- ``MaskDecoder`` -> ``FastMaskDecoder``: the upscaling (two 2x2 transposed convolutions and a
  channel norm) as GEMMs on channels-last rows, no layout copies of the 64x64x256 embedding.
- ``PromptEncoder`` -> ``FastPromptEncoder``: the dense positional encoding (the same 64x64 grid
  at every click) is computed once per weights version, device and dtype.

``upscale_masks`` resizes low-res logits straight to the size a view shows (e.g. the widget's
canvas), instead of to 1024x1024 and then to the full image as ``Sam.postprocess_masks`` does;
``postprocess_masks`` gives stock's full-size result bit for bit, upscaling only the rows and
columns that survive stock's crop.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from segment_anything.modeling import common as _common
from segment_anything.modeling import image_encoder as _enc
from segment_anything.modeling import mask_decoder as _mask
from segment_anything.modeling import prompt_encoder as _prompt
from segment_anything.modeling import transformer as _dec

from ._kernels import _has_hooks, _linear
from .record import record_of, update

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

__all__ = [
    "FastBlock",
    "FastEncoderAttention",
    "FastDecoderAttention",
    "FastTwoWayAttentionBlock",
    "FastPromptEncoder",
    "FastMaskDecoder",
    "enable_fast",
    "disable_fast",
    "is_fast",
    "postprocess_masks",
    "upscale_masks",
]

#: Default memory budget of one chunk (relative-position bias, MLP hidden layer), in bytes: small on
#: the CPU, where memory is what runs out (mybinder: 2 GB); larger on a GPU, where chunks cost launches.
CHUNK_BYTES = {"cpu": 32 * 2**20, "cuda": 512 * 2**20}

#: A global attention smaller than this (heads x N x N values, in bytes) runs stock code: for a small
#: model (micro: 4 x 256 x 256) the fast path's extra operations cost more than they save.
STOCK_BELOW_BYTES = 8 * 2**20


# ----------------------------------------------------------------------------- image encoder


class FastBlock(_enc.Block):
    """segment_anything's image-encoder ``Block``, a band of windows at a time, MLP in chunks.

    Stock normalises all tokens, pads them with zeros up to a multiple of the window (vit_b:
    64 -> 70, 4900 tokens instead of 4096), runs qkv, attention and the output projection on all
    windows at once (padding included), and the MLP on all tokens at once: each step a few tens
    of MB (vit_h: ~75 MB for qkv alone). Here a windowed block works on whole bands of windows
    (rows one window high), as many as ``chunk_bytes`` of qkv hold, at a time (on a GPU all of
    them at once); a zero token's qkv is the qkv bias, so qkv runs on the real
    tokens and the padding gets the bias (what it attends with is unchanged), and the output
    projection runs on the real tokens only. The MLP runs ``chunk_bytes`` of hidden units at a
    time. With a hook on ``attn`` (e.g. ``sam_widgets.anatomy``) stock's partition runs instead,
    so the hook sees what it sees in stock.
    """

    chunk_bytes: int = CHUNK_BYTES["cpu"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.attn) is not FastEncoderAttention or _has_hooks(self.attn):
            return super().forward(x)
        if self.window_size == 0 and self.attn._small(x):
            return super().forward(x)
        if self.window_size > 0:
            x = self._windowed_attention(x)
        else:
            x = x + self.attn(self.norm1(x))
        b, h, w, c = x.shape
        tokens = x.reshape(-1, c)  # the first block gets a permuted view of the patch embedding
        step = max(1, self.chunk_bytes // (self.mlp.lin1.out_features * x.element_size()))
        out = torch.empty_like(tokens)
        for i in range(0, tokens.shape[0], step):
            t = tokens[i : i + step]
            out[i : i + step] = t + self._mlp(self.norm2(t))
        return out.view(b, h, w, c)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """``self.mlp(x)``; on a bf16 CPU model the GELU runs inside the first product's epilogue."""
        mlp = self.mlp
        if type(mlp) is not _common.MLPBlock or _has_hooks(mlp) or not _gelu_exact(mlp.act):
            return mlp(x)
        return _linear(_linear(x, mlp.lin1, gelu=True), mlp.lin2)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        """x + window attention of norm1(x), as stock's partition/unpartition computes it."""
        attn = self.attn
        b, h, w, c = x.shape
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        nww = wp // ws
        band_bytes = b * ws * wp * 3 * c * x.element_size()  # qkv of one band of windows
        step = ws * max(1, self.chunk_bytes // band_bytes)  # rows per step, whole bands
        out = torch.empty(b, h, w, c, dtype=x.dtype, device=x.device)
        for r0 in range(0, h, step):
            r1 = min(h, r0 + step)
            rows = min(hp, r0 + step) - r0  # padded to whole windows
            nb = rows // ws
            qkv = _linear(self.norm1(x[:, r0:r1]), attn.qkv)  # B, r1-r0, W, 3C: real tokens only
            if (r1 - r0, w) != (rows, wp):  # zero padding in stock: its qkv is the bias
                padded = qkv.new_empty(b, rows, wp, 3 * c)
                padded[:, : r1 - r0, :w] = qkv
                padded[:, r1 - r0 :] = attn.qkv.bias
                padded[:, : r1 - r0, w:] = attn.qkv.bias
                qkv = padded
            windows = qkv.view(b, nb, ws, nww, ws, 3 * c).permute(0, 1, 3, 2, 4, 5)  # B, nb, nW, ws, ws, 3C
            windows = windows.reshape(b * nb * nww, ws * ws, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
            o = attn._attention(windows, (ws, ws))  # B*nb*nW, ws, ws, C
            o = o.view(b, nb, nww, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, rows, wp, c)
            out[:, r0:r1] = x[:, r0:r1] + _linear(o[:, : r1 - r0, :w], attn.proj)
        return out


def _gelu_exact(act: torch.nn.Module) -> bool:
    return type(act) is torch.nn.GELU and act.approximate == "none"


class FastEncoderAttention(_enc.Attention):
    """segment_anything's image-encoder ``Attention``, with SDPA and a chunked rel-pos bias.

    Same parameters and state-dict keys as the stock class (an instance's class is swapped by
    ``enable_fast``). ``chunk_bytes`` bounds the bias (and SDPA's matching scratch) per chunk.
    """

    chunk_bytes: int = CHUNK_BYTES["cpu"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._small(x):
            return super().forward(x)
        b, h, w, _ = x.shape
        qkv = _linear(x, self.qkv).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return _linear(self._attention(qkv, (h, w)), self.proj)

    def _small(self, x: torch.Tensor) -> bool:
        b, h, w, _ = x.shape
        return b * self.num_heads * (h * w) ** 2 * x.element_size() < STOCK_BELOW_BYTES

    def _attention(self, qkv: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """qkv: 3 x B x nh x HW x hd -> attention output B x H x W x (nh hd), before ``proj``."""
        q, k, v = qkv.unbind(0)
        b, _, _, _ = q.shape
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # B, nh, HW, hd
            return out.transpose(1, 2).reshape(b, hw[0], hw[1], -1)
        rel = (self.rel_pos_h, self.rel_pos_w)
        return _rel_pos_attention(q, k, v, rel, hw, self.scale, self.chunk_bytes)


def _rel_pos_attention(q, k, v, rel_pos, hw, scale, bias_bytes) -> torch.Tensor:
    """softmax(scale q k^T + rel_h + rel_w) v, a few query rows at a time; returns B, H, W, nh*hd.

    The decomposed term of ``add_decomposed_rel_pos`` for query (qh, qw) and key (kh, kw) is
    rel_h[q, kh] + rel_w[q, kw], with rel_h = q . Rh[qh, kh] and rel_w = q . Rw[qw, kw].
    """
    b, nh, n, hd = q.shape
    h, w = hw
    rh = _enc.get_rel_pos(h, h, rel_pos[0]).to(q.dtype)  # H, H, hd
    rw = _enc.get_rel_pos(w, w, rel_pos[1]).to(q.dtype)  # W, W, hd
    row_bytes = b * nh * w * n * q.element_size()  # bias of one row of queries
    rows = max(1, min(h, bias_bytes // max(row_bytes, 1)))
    out = torch.empty(b, h, w, nh, hd, dtype=q.dtype, device=q.device)
    out_heads = out.permute(0, 3, 1, 2, 4)  # B, nh, H, W, hd: a view, written chunk by chunk
    bias = torch.empty(b, nh, rows, w, h, w, dtype=q.dtype, device=q.device)  # reused per chunk
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        qc = q[:, :, r0 * w : r1 * w]  # B, nh, rows*W, hd
        rq = qc.reshape(b, nh, r1 - r0, w, hd)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, rh[r0:r1])  # B, nh, rows, W, H(keys)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, rw)  # B, nh, rows, W, W(keys)
        chunk = bias[:, :, : r1 - r0]
        torch.add(rel_h[..., :, None], rel_w[..., None, :], out=chunk)  # B, nh, rows, W, H, W
        o = F.scaled_dot_product_attention(
            qc, k, v, attn_mask=chunk.view(b, nh, (r1 - r0) * w, n), scale=scale
        )  # B, nh, rows*W, hd
        out_heads[:, :, r0:r1] = o.view(b, nh, r1 - r0, w, hd)
    return out.view(b, h, w, nh * hd)


# ----------------------------------------------------------------------------- mask decoder


class FastDecoderAttention(_dec.Attention):
    """The mask decoder's ``Attention``, reassociated when one side has few tokens.

    Token-to-image (few queries, 4096 keys): logits = (q Wk) x^T, out = (P x) Wv^T + bv, so the
    image tokens meet nh*Tq columns instead of being projected to ``internal_dim``. Image-to-token
    (4096 queries, few keys): logits = x (Wq^T K), out = P (V Wo^T) + bo. The query-side bias of
    the keys, q . bk, is the same for every key and cancels in the softmax. Used when it saves
    work (heads x few tokens < internal_dim); otherwise the stock code runs.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        nq, nk = q.shape[1], k.shape[1]
        if self.num_heads * nq < self.internal_dim and nk > nq:
            return self._few_queries(q, k, v)
        if self.num_heads * nk < self.internal_dim and nq > nk:
            return self._few_keys(q, k, v)
        return super().forward(q, k, v)

    def _few_queries(self, q, k, v) -> torch.Tensor:
        b, nq, _ = q.shape
        nh = self.num_heads
        d = self.internal_dim // nh
        wk = self.k_proj.weight.view(nh, d, -1)  # nh, d, C
        wv = self.v_proj.weight.view(nh, d, -1)
        qh = self._separate_heads(self.q_proj(q), nh) / math.sqrt(d)  # B, nh, Tq, d
        a = torch.einsum("bhtd,hdc->bhtc", qh, wk).reshape(b, nh * nq, -1)  # B, nh*Tq, C
        p = torch.softmax(_bmm(a, k.transpose(1, 2)), dim=-1)  # B, nh*Tq, Nk
        pv = _bmm(p, v).view(b, nh, nq, -1)  # B, nh, Tq, C
        out = torch.einsum("bhtc,hdc->bhtd", pv, wv) + self.v_proj.bias.view(nh, 1, d)
        return self.out_proj(self._recombine_heads(out))

    def image_to_token(self, q, k, v, residual: torch.Tensor) -> torch.Tensor:
        """``residual + self(q, k, v)``, the residual added inside the last product when it can."""
        nq, nk = q.shape[1], k.shape[1]
        if self.num_heads * nk < self.internal_dim and nq > nk:
            return self._few_keys(q, k, v, residual)
        return residual + self.forward(q, k, v)

    def _few_keys(self, q, k, v, residual: torch.Tensor | None = None) -> torch.Tensor:
        b, nq, c = q.shape
        nh = self.num_heads
        nk = k.shape[1]
        d = self.internal_dim // nh
        kh = self._separate_heads(self.k_proj(k), nh) / math.sqrt(d)  # B, nh, Tk, d
        vh = self._separate_heads(self.v_proj(v), nh)
        wq = self.q_proj.weight.view(nh, d, -1)  # nh, d, C
        wo = self.out_proj.weight.view(c, nh, d)  # C, nh, d
        m = torch.einsum("bhtd,hdc->bhtc", kh, wq).reshape(b, nh * nk, c)  # B, nh*Tk, C
        m_bias = (kh @ self.q_proj.bias.view(nh, d, 1)).reshape(b, nh * nk, 1)  # bq . K
        # Keys on rows, image tokens along the rows: the softmax over a handful of keys runs
        # down columns, vectorised along the 4096 tokens (along a row of 7 it would not be).
        logits = _bmm(m, q.transpose(1, 2), add=m_bias)  # B, nh*Tk, Nq
        p = torch.softmax(logits.view(b, nh, nk, nq), dim=2).view(b, nh * nk, nq)
        g = torch.einsum("bhtd,chd->bhtc", vh, wo).reshape(b, nh * nk, c)  # B, nh*Tk, C
        return _to_image(p, g, self.out_proj.bias, nh, residual)

    def with_image_kv(self, q: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
        """Token-to-image attention with the image side already projected (B x nh x N x d)."""
        d = self.internal_dim // self.num_heads
        qh = self._separate_heads(self.q_proj(q), self.num_heads) / math.sqrt(d)  # B, nh, Tq, d
        p = torch.softmax(qh @ kh.transpose(-1, -2), dim=-1)  # B, nh, Tq, N
        return self.out_proj(self._recombine_heads(p @ vh))

    def with_image_q(
        self, qh_img: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual=None
    ) -> torch.Tensor:
        """Image-to-token attention with the image queries already projected (B x nh x N x d),
        plus ``residual`` if given."""
        b, nh, n, d = qh_img.shape
        c = self.out_proj.out_features
        kh = self._separate_heads(self.k_proj(k), nh) / math.sqrt(d)  # B, nh, Tk, d
        vh = self._separate_heads(self.v_proj(v), nh)
        p = torch.softmax(kh @ qh_img.transpose(-1, -2), dim=2)  # B, nh, Tk, N: over the keys
        g = torch.einsum("bhtd,chd->bhtc", vh, self.out_proj.weight.view(c, nh, d)).reshape(b, -1, c)
        return _to_image(p.reshape(b, -1, n), g, self.out_proj.bias, nh, residual)


def _to_image(p, g, bias, heads: int, residual):
    """P^T G + bias (+ residual): image tokens from per-head attention P (B x heads*T x N) and the
    tokens' values already through the output projection, G (B x heads*T x C). Each head's
    weights sum to one, so ``bias / heads`` on every row of G adds ``bias`` once."""
    if residual is None:
        return _bmm(p.transpose(1, 2), g, add=bias.view(1, 1, -1))
    return _bmm(p.transpose(1, 2), g + bias / heads, add=residual)


def _bmm(a: torch.Tensor, b: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """``add + a @ b`` for B x n x k and B x k x m; 2-D GEMMs when B is 1, which take transposed
    operands as they are (the batched path copies them)."""
    if a.shape[0] != 1:
        return torch.bmm(a, b) if add is None else torch.baddbmm(add, a, b)
    if add is None:
        return torch.mm(a[0], b[0])[None]
    return torch.addmm(add.reshape(add.shape[-2:]), a[0], b[0])[None]


class FastTwoWayAttentionBlock(_dec.TwoWayAttentionBlock):
    """segment_anything's ``TwoWayAttentionBlock``; ``keys + key_pe`` is formed once, not twice.

    Stock adds the positional encoding to the 4096 image tokens for the token-to-image and again,
    unchanged, for the image-to-token attention. Same values, one pass over HW x C fewer.
    """

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        k = keys + key_pe  # keys do not change until the image-to-token attention below
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        i2t = self.cross_attn_image_to_token
        if type(i2t) is FastDecoderAttention:
            keys = self.norm4(i2t.image_to_token(q=k, k=q, v=queries, residual=keys))
        else:
            keys = self.norm4(keys + i2t(q=k, k=q, v=queries))
        return queries, keys

    def forward_cached(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, image: _ImageSide
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with the image side of both cross-attentions projected beforehand: valid
        while ``keys`` are the image embedding (+ the no-mask embedding), i.e. in the first block."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image.with_image_kv(q, image.k, image.v))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(self.cross_attn_image_to_token.with_image_q(image.q, k=q, v=queries, residual=keys))
        return queries, keys


class _ImageSide:
    """The first two-way block's projections of the image tokens, for one image embedding.

    Without a mask prompt the first block's image side (embedding + no-mask embedding, and its
    positional encoding) is the same at every click on an image: its k, v (token-to-image) and q
    (image-to-token) projections, 3 x 4096 x 128 each for SAM, are made once per image.
    """

    def __init__(self, block: FastTwoWayAttentionBlock, keys, key_pe, key: tuple, refs: tuple) -> None:
        t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
        k = keys + key_pe
        self.k = t2i._separate_heads(t2i.k_proj(k), t2i.num_heads)  # B, nh, N, d
        self.v = t2i._separate_heads(t2i.v_proj(keys), t2i.num_heads)
        self.q = i2t._separate_heads(i2t.q_proj(k), i2t.num_heads)
        self.key = key
        self.refs = tuple(weakref.ref(t) for t in refs)

    def valid(self, key: tuple, refs: tuple) -> bool:
        return self.key == key and all(r() is t for r, t in zip(self.refs, refs, strict=True))


class FastPromptEncoder(_prompt.PromptEncoder):
    """segment_anything's ``PromptEncoder``; ``get_dense_pe`` is computed once and kept.

    The dense positional encoding depends only on a fixed random matrix (a buffer-like parameter)
    and the grid size; it is recomputed when that matrix changes (version, device or dtype).
    """

    def get_dense_pe(self) -> torch.Tensor:
        g = self.pe_layer.positional_encoding_gaussian_matrix
        key = (_version(g), g.data_ptr(), g.device, g.dtype, tuple(self.image_embedding_size))
        cached = self.__dict__.get("_sam_widgets_dense_pe")
        if cached is None or cached[0] != key:
            # Channels-last in memory (same shape and values): FastMaskDecoder reads it as HW x C.
            cached = (key, super().get_dense_pe().contiguous(memory_format=torch.channels_last))
            self.__dict__["_sam_widgets_dense_pe"] = cached
        return cached[1]


class FastMaskDecoder(_mask.MaskDecoder):
    """segment_anything's ``MaskDecoder``, channels-last from the transformer to the masks.

    Stock turns the transformer's B x HW x C output back into B x C x H x W (a copy), upscales it
    with two 2x2-stride-2 transposed convolutions and a channel LayerNorm on channels-first
    tensors (each a strided pass over 1-2 M values), then multiplies by the hypernetwork's
    vectors. A 2x2 stride-2 transposed convolution is one matrix product per input pixel, so here
    both are plain GEMMs on B x HW x C rows, the norm is ``F.layer_norm`` on the last axis, and
    only the final masks (B x 4 x 256 x 256) are put in image order. Same arithmetic up to order.
    """

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stock's forward; only the masks it returns are made (stock makes all four, drops some)."""
        if not _standard_upscaling(self.output_upscaling):
            return super().forward(
                image_embeddings,
                image_pe,
                sparse_prompt_embeddings,
                dense_prompt_embeddings,
                multimask_output,
            )
        wanted = slice(1, None) if multimask_output else slice(0, 1)
        masks, iou_pred = self._predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, wanted
        )
        return masks, iou_pred[:, wanted]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not _standard_upscaling(self.output_upscaling):
            return super().predict_masks(
                image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
            )
        return self._predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, slice(None)
        )

    def _predict_masks(
        self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, wanted
    ):
        n = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings), dim=1)
        src, pos = _channels_last_inputs(image_embeddings, image_pe, dense_prompt_embeddings, n)
        b, h, w, c = src.shape
        hs, keys = self._transformer(src, pos, tokens, image_embeddings, image_pe, dense_prompt_embeddings)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        ct1, norm, act1, ct2, act2 = self.output_upscaling
        c1, c2 = ct1.out_channels, ct2.out_channels
        # ConvTranspose2d(k=2, s=2): out[o, 2i+a, 2j+d] = sum_c x[c, i, j] W[c, o, a, d] + bias[o]
        w1 = ct1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c1)  # c, (a d o)
        w2 = ct2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        b1, b2 = ct1.bias.repeat(4), ct2.bias.repeat(4)
        chosen = range(self.num_mask_tokens)[wanted]
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in chosen], dim=1
        )  # B, masks, c2
        m = len(chosen)
        masks = keys.new_empty(b, m, h * w * 16)  # B, masks, (h w a d a2 d2)
        # A few hundred pixels at a time: each step's 16x upscaled features (~1 MB) stay in cache
        # between the products, the norm and the GELUs (measured ~1.5x faster than whole).
        step = _UPSCALE_PIXELS
        for bi in range(b):
            tokens = keys[bi]  # HW, C
            hyper = hyper_in[bi]  # masks, c2
            for i in range(0, h * w, step):
                y = torch.addmm(b1, tokens[i : i + step], w1)  # pixels, (a d c1)
                y = act1(F.layer_norm(y.view(-1, 4, c1), (c1,), norm.weight, norm.bias, norm.eps))
                z = act2(torch.addmm(b2, y.view(-1, c1), w2)).view(-1, c2)  # (pixels a d a2 d2), c2
                torch.mm(hyper, z.t(), out=masks[bi, :, i * 16 : (i + step) * 16])
        # Pixel (4i + 2a + a2, 4j + 2d + d2), in two copies of long runs: (w, a) -> (a, w), then
        # (w, d, a2) -> (a2, w, d); one 7-axis permute moved runs of 2 floats (~3x slower).
        masks = masks.view(b * m * h, w, 2, 8).transpose(1, 2).contiguous()  # (m h a), w, (d a2 d2)
        masks = masks.view(b * m * h * 2, w, 2, 2, 2).permute(0, 3, 1, 2, 4).reshape(b, m, 4 * h, 4 * w)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred

    @torch.no_grad()
    def prepare(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, dense: torch.Tensor) -> None:
        """Project the first block's image side for this embedding now (e.g. right after encoding)
        so that the first click on the image does not pay for it. ``dense``: the no-mask prompt
        embedding (``prompt_encoder(None, None, None)[1]``)."""
        src, pos = _channels_last_inputs(image_embeddings, image_pe, dense, 1)
        self._image_side(src, pos, image_embeddings, image_pe, dense)

    def _transformer(self, src, pos, tokens, image_embeddings, image_pe, dense):
        """The two-way transformer on B x H x W x C inputs -> (tokens, keys B x HW x C); the first
        block's image side comes from ``_ImageSide`` when it can (one prompt, no mask prompt)."""
        t = self.transformer
        b, h, w, c = src.shape
        side = self._image_side(src, pos, image_embeddings, image_pe, dense)
        if side is None:
            return t(src.permute(0, 3, 1, 2), pos.permute(0, 3, 1, 2), tokens)
        keys, key_pe = src.view(b, h * w, c), pos.view(b, h * w, c)
        queries = tokens
        for i, layer in enumerate(t.layers):
            if i == 0:
                queries, keys = layer.forward_cached(queries, keys, tokens, side)
            else:
                queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
        attn_out = t.final_attn_token_to_image(q=queries + tokens, k=keys + key_pe, v=keys)
        return t.norm_final_attn(queries + attn_out), keys

    def _image_side(self, src, pos, image_embeddings, image_pe, dense) -> _ImageSide | None:
        t = self.transformer
        usable = (
            not torch.is_grad_enabled()  # SamPredictor predicts under no_grad; training must not cache
            and src.shape[0] == 1
            and dense.stride(-1) == 0
            and dense.stride(-2) == 0  # the no-mask embedding, broadcast: the same at every click
            and type(t) is _dec.TwoWayTransformer
            and all(type(layer) is FastTwoWayAttentionBlock for layer in t.layers)
            and type(t.layers[0].cross_attn_token_to_image) is FastDecoderAttention
            and type(t.layers[0].cross_attn_image_to_token) is FastDecoderAttention
        )
        if not usable:
            return None
        block = t.layers[0]
        params = list(block.cross_attn_token_to_image.parameters()) + list(
            block.cross_attn_image_to_token.parameters()
        )
        no_mask = dense[0, :, 0, 0]
        key = (
            _version(image_embeddings),
            _version(image_pe),
            tuple(_version(p) for p in params),
            no_mask.detach().cpu().numpy().tobytes(),
            torch.is_inference_mode_enabled(),
        )
        refs = (image_embeddings, image_pe)
        side = self.__dict__.get("_sam_widgets_image_side")
        if side is None or not side.valid(key, refs):
            b, h, w, c = src.shape
            side = _ImageSide(block, src.view(b, h * w, c), pos.view(b, h * w, c), key, refs)
            self.__dict__["_sam_widgets_image_side"] = side
        return side


def _version(t: torch.Tensor) -> int:
    """In-place writes to ``t`` so far; -1 for an inference tensor (made under inference_mode),
    which keeps no count: such tensors are taken as never written in place."""
    return -1 if t.is_inference() else t._version


def _channels_last_inputs(image_embeddings, image_pe, dense, n: int):
    """Stock's ``src`` and ``pos_src`` for ``n`` prompts, B x H x W x C in memory, so that the
    transformer's flatten(2).permute(0, 2, 1) is a view."""
    src = image_embeddings.permute(0, 2, 3, 1)
    pos = image_pe.permute(0, 2, 3, 1)
    if n != 1:  # stock: repeat_interleave by the number of prompts
        src = torch.repeat_interleave(src, n, dim=0)
        pos = torch.repeat_interleave(pos, n, dim=0)
    return src + dense.permute(0, 2, 3, 1), pos.contiguous()


#: Embedding pixels per step of FastMaskDecoder's upscaling (each becomes 16 mask pixels).
_UPSCALE_PIXELS = 512


def _standard_upscaling(seq: torch.nn.Module) -> bool:
    """Whether ``output_upscaling`` is segment_anything's: ConvT(2, 2), LayerNorm2d, act, ConvT(2, 2), act."""
    if not isinstance(seq, torch.nn.Sequential) or len(seq) != 5:
        return False
    ct1, norm, _a1, ct2, _a2 = seq
    return (
        all(_is_2x2_upsample(ct) for ct in (ct1, ct2))
        and isinstance(norm, _common.LayerNorm2d)
        and norm.weight.shape[0] == ct1.out_channels == ct2.in_channels
    )


def _is_2x2_upsample(ct: torch.nn.Module) -> bool:
    return (
        isinstance(ct, torch.nn.ConvTranspose2d)
        and ct.kernel_size == (2, 2)
        and ct.stride == (2, 2)
        and ct.padding == (0, 0)
        and ct.output_padding == (0, 0)
        and ct.dilation == (1, 1)
        and ct.groups == 1
        and ct.bias is not None
    )


# ----------------------------------------------------------------------------- switching

_SWAPS = (
    (_enc.Block, FastBlock),
    (_enc.Attention, FastEncoderAttention),
    (_dec.Attention, FastDecoderAttention),
    (_dec.TwoWayAttentionBlock, FastTwoWayAttentionBlock),
    (_prompt.PromptEncoder, FastPromptEncoder),
    (_mask.MaskDecoder, FastMaskDecoder),
)


def enable_fast(sam: Sam, *, chunk_bytes: int | None = None) -> Sam:
    """Switch ``sam`` to the fast paths in place (see the module docstring); returns ``sam``.

    Only modules whose class is exactly segment_anything's stock class are swapped; parameters,
    buffers and state-dict keys are untouched, and ``disable_fast`` restores the stock classes.
    ``chunk_bytes``: memory budget of one chunk of the encoder's relative-position bias and of its
    MLP's hidden layer (default: ``CHUNK_BYTES`` for the model's device type).
    """
    if chunk_bytes is None:
        chunk_bytes = CHUNK_BYTES.get(sam.device.type, CHUNK_BYTES["cuda"])
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}.")
    for module in sam.modules():
        for stock, fast in _SWAPS:
            if type(module) is stock:
                module.__class__ = fast
        if type(module) in (FastEncoderAttention, FastBlock):
            module.chunk_bytes = int(chunk_bytes)
    update(sam, fast=True)
    return sam


def disable_fast(sam: Sam) -> Sam:
    """Undo ``enable_fast``: every swapped module runs segment_anything's own code again."""
    for module in sam.modules():
        for stock, fast in _SWAPS:
            if type(module) is fast:
                module.__class__ = stock
                module.__dict__.pop("chunk_bytes", None)
                # The per-image caches stay: stock code never reads them, and enable_fast finds
                # them checked against their key (cheap switching, e.g. in the bench).
    update(sam, fast=False)
    return sam


def is_fast(sam: Sam) -> bool:
    """Whether ``enable_fast`` is in effect on ``sam``."""
    return record_of(sam).fast


# ----------------------------------------------------------------------------- masks


def postprocess_masks(
    masks: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int], img_size: int
) -> torch.Tensor:
    """``Sam.postprocess_masks``, bit for bit, upscaling only what its crop keeps.

    Stock upscales BxCx256x256 logits to img_size x img_size, crops to ``input_size`` and resizes
    to ``original_size``. Upscaling a top-left block of low-res rows and columns by the same exact
    factor computes the kept pixels with the same weights from the same inputs; the block keeps
    one low-res row and column beyond what the kept pixels read, so no border is clamped
    differently. When ``input_size`` equals ``original_size`` stock's second resize is the
    identity and is left out.
    """
    low = masks.shape[-1]
    factor = img_size // low
    ih, iw = input_size
    if factor * low != img_size or masks.shape[-2] != low:
        return _stock_postprocess(masks, input_size, original_size, img_size)
    rows = min(low, -(-ih // factor) + 1)
    cols = min(low, -(-iw // factor) + 1)
    up = F.interpolate(
        masks[..., :rows, :cols],
        scale_factor=float(factor),
        mode="bilinear",
        align_corners=False,
        recompute_scale_factor=False,
    )[..., :ih, :iw]
    if tuple(original_size) == (ih, iw):
        return up.contiguous()
    return F.interpolate(up, tuple(original_size), mode="bilinear", align_corners=False)


def _stock_postprocess(masks, input_size, original_size, img_size):
    masks = F.interpolate(masks, (img_size, img_size), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


def upscale_masks(
    masks: torch.Tensor,
    input_size: tuple[int, int],
    img_size: int,
    out_size: tuple[int, int],
) -> torch.Tensor:
    """Low-res logits (BxCx256x256) straight to ``out_size`` (h, w), one bilinear resize.

    ``input_size``: the resized image inside the ``img_size`` square (SamPredictor's
    ``input_size``); the original image's size does not enter: only the part of the input that
    holds the image is resized, to whatever ``out_size`` the view asks for.

    Pixel (i, j) of the result samples the low-res map where stock's chain would place the
    centre of the image region it covers (same geometry: the padding is cut off exactly); stock
    resizes twice, so values near a mask edge differ slightly and ``> 0`` can flip a pixel there.
    For a view smaller than the image (the widget's canvas) this costs ``out_size`` pixels
    instead of img_size^2 + the whole image.
    """
    low = masks.shape[-1]
    oh, ow = (int(v) for v in out_size)
    if oh < 1 or ow < 1:
        raise ValueError(f"out_size must be positive (h, w), got {out_size}.")
    # The image covers input_size of img_size, i.e. input_size * low / img_size low-res pixels.
    src_h = input_size[0] * low / img_size
    src_w = input_size[1] * low / img_size
    rows = min(low, math.ceil(src_h) + 1)  # + 1: the neighbour the last pixels blend with
    cols = min(low, math.ceil(src_w) + 1)
    # The aten op takes the output size and the scale apart: the scale fixes the geometry (source
    # coordinate = (i + 0.5) * src_h / oh - 0.5), the size what is computed. F.interpolate would
    # derive one from the other.
    # Each mask as a one-channel image: torch's CPU kernel copies a several-channel map to
    # channels-last and back; one channel at a time measured ~2.5x faster (same weights, same
    # sums, last-bit differences from the order of the arithmetic).
    lead = masks.shape[:-2]
    kept = masks[..., :rows, :cols].reshape(-1, 1, rows, cols).contiguous()
    out = torch.ops.aten.upsample_bilinear2d(kept, [oh, ow], False, oh / src_h, ow / src_w)
    return out.view(*lead, oh, ow)
