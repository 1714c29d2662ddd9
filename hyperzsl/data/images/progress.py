"""A progress line on stderr for long extractions: images done, images/s and ETA. On a
terminal it is redrawn in place; in a log file a line is printed now and then instead of
thousands of carriage returns."""
from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """``advance(n)`` after each batch; the rate counts only images computed in this run,
    so a resumed extraction's ETA is not flattered by cached ones."""

    def __init__(self, total: int, done: int = 0, stream=None, label: str = "extract",
                 log_every: float = 10.0) -> None:
        self.total, self.done, self.label = total, done, label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.2 if self.tty else log_every
        self.start, self.start_done = time.monotonic(), done
        self.last = 0.0
        self._drawn = False

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.label}: {self.done}/{self.total} images ({pct:.0f}%)"
        if self.done > self.start_done:
            rate = self.rate
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            text += f", {rate:.1f} images/s, ETA {format_seconds(eta)}"
        return text

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self._show()

    def note(self, message: str) -> None:
        """A message on its own line (a warning), without tearing the progress line."""
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _show(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\033[K")
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
