"""Measured speed and measured IoU, in one run.

Speed: stock segment_anything.SamPredictor against CachedPredictor, on the same model object and
the same image:

- ``set_image_ms``: the first encoding of an image (stock, and ours on a cache miss);
- ``click_ms``: one ``predict`` with a single positive point and multimask output (the decoder
  plus upscaling the masks to the image size), median over many clicks;
- ``revisit_ms``: ``set_image`` of an image seen before (stock re-encodes; ours hits the cache);
- ``peak_mb``: peak memory added while encoding (CUDA: max allocated; CPU: process RSS, sampled);
  on CPU also ``peak_rss_mb``, the process's whole RSS at that peak (weights and libraries included);
- ``view_ms``: ours, a click with masks at the widget's display size (longest side 768);
- ``floor``: the encoder's FLOPs, the machine's own GEMM rate (fp32, and bf16 where the CPU has
  bf16 instructions), the GFLOP/s each predictor's set_image reached and its fraction of that
  floor for the precision the model runs in (``sam_widgets.bench.floor``).

Medians over ``repeats`` warm runs, with min and max; stock and ours take turns, one measurement
each, so that a change of the machine's load during the run affects both alike.

IoU (``evaluate_iou``): every object of samples with ground truth, loaded by the caller
(``sam_widgets.datasets``; from ``--dataset`` on the command line, ``sam_widgets.cli``), through
the protocol of ``sam_widgets.evaluation`` (1 click, 3 clicks, box), with the encoder time of each
image. Never from random weights: those give timing only, marked "random weights: no IoU".
With ``noc=True`` (``--noc``): clicks-to-IoU, NoC@85/90, failures and mIoU@1/3/5/10 per model
(``bench.noc``), every object through up to ``max_clicks`` simulated clicks.
``python -m sam_widgets.bench --help``.
"""

from __future__ import annotations

from .floor import encoder_gflop, format_floor, gemm_floor
from .iou import NO_IOU_RANDOM, IoUResult, evaluate_iou
from .noc import NOC_COLUMNS, PUBLISHED_NOC, format_noc_table
from .plots import plot_examples, plot_speed_vs_iou
from .report import (
    PER_OBJECT_COLUMNS,
    SUMMARY_COLUMNS,
    format_iou_table,
    format_prompt_table,
    format_table,
    write_results,
)
from .runner import run
from .timing import BenchResult, bench_model, machine_info
from .weights import resolve_weights

__all__ = [
    "BenchResult",
    "IoUResult",
    "NO_IOU_RANDOM",
    "bench_model",
    "gemm_floor",
    "encoder_gflop",
    "format_floor",
    "evaluate_iou",
    "resolve_weights",
    "run",
    "machine_info",
    "format_table",
    "format_iou_table",
    "format_prompt_table",
    "format_noc_table",
    "NOC_COLUMNS",
    "PUBLISHED_NOC",
    "SUMMARY_COLUMNS",
    "PER_OBJECT_COLUMNS",
    "write_results",
    "plot_speed_vs_iou",
    "plot_examples",
]
