"""Progress of a promotion: a live line on a terminal, periodic log lines elsewhere (Airflow)."""

from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger("greenlight.promotion.progress")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """Counts objects and bytes done of a planned total.

    ``tty=True`` redraws one line on stderr at most every 0.2 s; otherwise a log line is written
    every ``interval`` seconds, which is what an Airflow task log wants.
    """

    def __init__(self, *, tty: bool | None = None, interval: float = 10.0, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = 0.2 if self.tty else interval
        self.total_objects = 0
        self.total_bytes = 0
        self.objects = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._started = time.monotonic()

    def start(self, objects: int, nbytes: int) -> None:
        with self._lock:
            self.total_objects, self.total_bytes = objects, nbytes
            self.objects = self.bytes = 0
            self._started = self._last = time.monotonic()

    def advance(self, objects: int, nbytes: int) -> None:
        with self._lock:
            self.objects += objects
            self.bytes += nbytes
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._emit(final=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        pct = 100.0 * self.objects / self.total_objects if self.total_objects else 100.0
        return (
            f"progress: {self.objects}/{self.total_objects} objects, {_human(self.bytes)}/{_human(self.total_bytes)} "
            f"({pct:.0f}%, {_human(self.bytes / elapsed)}/s)"
        )

    def _emit(self, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
            self.stream.flush()
        else:
            log.info(self.line())

    def finish(self) -> None:
        with self._lock:
            if self.total_objects:
                self._emit(final=True)
