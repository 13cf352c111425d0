"""``python -m sam_widgets.bench``: the ``sam-widgets bench`` command (``sam_widgets.cli``)."""

from sam_widgets.cli import bench_main

raise SystemExit(bench_main())
