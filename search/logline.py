"""Lines for log files (Slurm, nohup, Kubernetes, CI), where no live view can draw: an ISO date and time, then
the message; or, with ``--log-format json`` (``$FACESEARCH_LOG_FORMAT``), one JSON object per line for log
collectors. Every line is flushed at once: a job's log must not wait hours for a buffer to fill."""
from __future__ import annotations

import datetime as dt
import json
import os
import sys

LOG_FORMAT_ENV = "FACESEARCH_LOG_FORMAT"   # read per line, so the workers a supervisor starts inherit it
LOG_FORMATS = ("text", "json")


class Line(str):
    """A message that also carries fields for the JSON format; every other caller sees a plain str."""

    fields: dict

    def __new__(cls, text: str, **fields) -> "Line":
        line = super().__new__(cls, text)
        line.fields = fields
        return line


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def format_line(message: str, fmt: str | None = None) -> str:
    """``2026-12-07T03:40:12+00:00 message``, or ``{"time": ..., "event": ..., ..., "message": ...}``."""
    fmt = fmt or os.environ.get(LOG_FORMAT_ENV) or "text"
    if fmt == "json":
        fields = getattr(message, "fields", {})
        return json.dumps({"time": now_iso(), "event": "message", **fields, "message": str(message)}, default=str)
    return f"{now_iso()} {message}"


def log_line(message: str) -> None:
    """One line on stdout, flushed."""
    print(format_line(message), file=sys.stdout, flush=True)


def epoch_line(trial: int, epoch: int, epochs: int, loss: float, val_eer: float, lr: float, images_per_s: float,
               seconds: float) -> Line:
    """``trial 3 epoch 2/10: loss 3.1234, val EER 21.50%, lr 1.00e-03, 412 img/s, 61.2s``."""
    return Line(f"trial {trial} epoch {epoch}/{epochs}: loss {loss:.4f}, val EER {val_eer:.2f}%, lr {lr:.2e}, "
                f"{images_per_s:.0f} img/s, {seconds:.1f}s",
                event="epoch", trial=trial, epoch=epoch, epochs=epochs, loss=loss, val_eer=val_eer, lr=lr,
                images_per_s=images_per_s, seconds=seconds)
