"""Faults the tests inject into the operator's own process, named in the environment variable
FLOWRUN_FAILPOINTS (a comma-separated list): what no outside action can cause on demand. Off
unless the variable is set; the chart never sets it.

- `pass-hangs`: every FlowRun pass blocks for ever (shows the liveness answer failing on a wedge).
"""

from __future__ import annotations

import os
import threading

ACTIVE = frozenset(name.strip() for name in os.environ.get("FLOWRUN_FAILPOINTS", "").split(",") if name.strip())


def hang_if(name: str) -> None:
    """Block the calling thread for ever when failpoint `name` is active."""
    if name in ACTIVE:
        threading.Event().wait()
