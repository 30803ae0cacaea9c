"""What ``--help`` shows beyond each option's own text: no value placeholder on flags, TrainConfig's fields
(``train --help``), and the environment variables a command reads (also listed in the README).
"""
from __future__ import annotations

import inspect
import re

from typer.core import TyperOption

# Every FACESEARCH_* variable a user may set: name -> what it does. The README's table says the same;
# tests/test_cli_output.py checks both against the code.
ENV_VARS = {
    "FACESEARCH_STORAGE": "the Optuna storage when --storage is not given (default runs/facesearch.journal)",
    "FACESEARCH_DATA": "the data set root the built-in studies read (${FACESEARCH_DATA:-data/synth} in a spec)",
    "FACESEARCH_RUNS": "where trial run folders go (a shared file system for many machines); default: beside "
                       "the journal, runs/ for a database",
    "FACESEARCH_CACHE": "the decoded-image cache folder (default ~/.cache/facesearch/...; never the data folder)",
    "FACESEARCH_CACHE_BUDGET": "the most one cache may take, e.g. 40G (default: half the free disk)",
    "FACESEARCH_HEARTBEAT": "INTERVAL:GRACE seconds of a database trial's heartbeat and of the silence after "
                            "which it is retried (default 20:60)",
    "FACESEARCH_GPU_DECODE": "0: decode JPEG on the CPU even on CUDA (default: on the GPU when it can)",
    "FACESEARCH_LOG_FORMAT": "log lines without a terminal: text (ISO date and time first) or json (one object "
                             "per line); what --log-format sets",
}
# which commands read which variables (beyond --storage's own [env var: ...] line)
TRAINING = ("FACESEARCH_CACHE", "FACESEARCH_CACHE_BUDGET", "FACESEARCH_GPU_DECODE")
STUDY = ("FACESEARCH_DATA", "FACESEARCH_RUNS", "FACESEARCH_HEARTBEAT", *TRAINING)


def env_epilog(*names: str) -> str:
    """``Environment: NAME: what it does`` lines for a command's help."""
    from rich.markup import escape

    return "Environment:\n\n" + "\n\n".join(escape(f"{name}: {ENV_VARS[name]}") for name in names)


def config_fields_epilog() -> str:
    """TrainConfig's fields with their defaults and comments, by section, for ``train --help``."""
    from facenet.config import TrainConfig

    lines, section = [], None
    for line in inspect.getsource(TrainConfig).splitlines():
        if m := re.match(r"\s+# --- (.*) ---", line):
            section = m.group(1)
            lines.append(f"\n\n{section}:")
        elif m := re.match(r"\s+(\w+): [\w| ]+ = (.+?)(?:\s+# (.*))?$", line):
            name, default, note = m.groups()
            lines.append(f"\n{name}={default}" + (f"  {note}" if note else ""))
    from rich.markup import escape

    return escape("TrainConfig fields (--set key=value, or keys of --config):" + "".join(lines))


def _no_placeholder_on_flags() -> None:
    """typer 0.29 shows a ``<bool>`` value placeholder on flags (``--help <bool>``), as if they took a value."""
    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_no_placeholder_on_flags()
