"""The operator's settings: made once from the command line (cli.py), frozen, and handed to the
runtime through kopf's memo; nothing reads them from module globals."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OrphanPolicy:
    grace: float = 60.0  # seconds an object whose FlowRun is gone waits before it is reported
    delete_after: float | None = None  # then deleted this much later; None: report only


@dataclass(frozen=True)
class Settings:
    # The namespaces served; empty: every namespace (cluster-wide).
    namespaces: tuple[str, ...] = ()
    # Passes of different runs at once (the threads of the pool, and the HTTP connections they use).
    workers: int = 16
    orphans: OrphanPolicy = field(default_factory=OrphanPolicy)
    # The liveness answer fails after passes have been due this long with none finishing (or a
    # watch failing this long) while the API server answers (health.py).
    stall_seconds: float = 300.0

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def watched(self) -> list[str | None]:
        """What each informer watches: each namespace, or None for all of them."""
        return [None] if self.clusterwide else list(self.namespaces)
