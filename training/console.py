"""A Reporter for terminals: a progress line (redrawn in place on a TTY, one line per update otherwise), log lines,
and Ctrl-C handling that asks the run to stop cleanly (a second Ctrl-C interrupts at once)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

# Short names for the progress line, in LeRobot's log style ("loss:0.037 grdn:0.722 lr:7.9e-05 updt_s:0.098").
_SHOWN = (
    ("train/loss", "loss", "{:.4f}"),
    ("train/grad_norm", "grdn", "{:.3f}"),
    ("train/lr", "lr", "{:.1e}"),
    ("train/samples_per_s", "smpl/s", "{:,.0f}"),
    ("train/update_s", "updt_s", "{:.4f}"),
    ("train/data_s", "data_s", "{:.4f}"),
    ("val/loss", "val", "{:.4f}"),
    ("eval/pc_success", "success%", "{:.1f}"),
)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ConsoleReporter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self._stop_requested = False
        self._line_open = False
        self._started = time.monotonic()
        self._first_step: int | None = None

    def format_progress(self, step: int, total: int, metrics: dict[str, float]) -> str:
        width = 24
        filled = int(width * step / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        parts = [f"[{bar}] step {step}/{total} ({100 * step / max(total, 1):.0f}%)"]
        parts += [f"{short}:{fmt.format(metrics[key])}" for key, short, fmt in _SHOWN if key in metrics]
        if self._first_step is None:
            self._first_step = step
        else:
            done = step - self._first_step
            if done > 0:
                rate = done / (time.monotonic() - self._started)
                parts.append(f"eta {_duration((total - step) / rate)}")
        return " ".join(parts)

    def _write_line(self, text: str) -> None:
        if self._line_open:
            self.stream.write("\r\x1b[2K")
            self._line_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        line = self.format_progress(step, total, metrics)
        if self.interactive:
            self.stream.write("\r\x1b[2K" + line)
            self._line_open = step < total
            if not self._line_open:
                self.stream.write("\n")
            self.stream.flush()
        else:
            self._write_line(line)

    def checkpoint(self, step: int, path: Path) -> None:
        self._write_line(f"checkpoint {step} saved to {path}")

    def log(self, message: str) -> None:
        self._write_line(message)

    def should_stop(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        self._stop_requested = True

    @contextmanager
    def stop_on_interrupt(self) -> Iterator[None]:
        """While active, the first Ctrl-C makes should_stop() True (the run saves a checkpoint and returns);
        a second one raises KeyboardInterrupt as usual."""

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            self._write_line("stopping after this step (saving a checkpoint); press Ctrl-C again to abort")

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
