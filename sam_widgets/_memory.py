"""Peak resident memory (RSS) added by a block of code, sampled by a thread (no torch needed).

Used by ``bench`` (encoder memory against stock) and ``compare`` (the checkpoint notebook).
"""

from __future__ import annotations

import threading


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim), so RSS growth is measurable."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): RSS may then under-report growth
        pass


class PeakRSS:
    """Peak resident memory added by the process during a ``with`` block, in bytes (sampled).

    ``with PeakRSS() as peak: ...`` then ``peak.bytes`` (added over the RSS at entry) and
    ``peak.peak_rss_bytes`` (the whole process's peak, weights included). A thread samples the RSS
    every ``interval`` seconds: spikes shorter than that can be missed. ``trim=True`` first hands
    memory freed earlier back to the OS, which would otherwise hide this block's growth.
    """

    def __init__(self, interval: float = 0.005, trim: bool = False) -> None:
        self.interval = interval
        self.trim = trim
        self.bytes = 0
        self.peak_rss_bytes = 0

    def __enter__(self) -> PeakRSS:
        import psutil

        if self.trim:
            trim_heap()
        self._proc = psutil.Process()
        self._base = self._peak = self._proc.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self._peak = max(self._peak, self._proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.bytes = self._peak - self._base
        self.peak_rss_bytes = self._peak
