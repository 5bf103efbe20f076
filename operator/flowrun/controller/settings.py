"""The operator's settings: made once from the command line (cli.py), frozen, and handed to the
runtime through kopf's memo; nothing reads them from module globals."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OrphanPolicy:
    grace: float = 60.0  # seconds an object whose FlowRun is gone waits before it is reported
    delete_after: float | None = None  # then deleted this much later; None: report only


@dataclass(frozen=True)
class LeaderElection:
    """Replicas elect the one that reconciles through a Lease (election.py). The timings are
    client-go's defaults; lease_seconds > renew_deadline_seconds > retry_period_seconds."""

    namespace: str  # where the Lease is (the operator's own namespace)
    lease_name: str
    identity: str  # this replica's name in the Lease: unique among the replicas
    # Another replica takes the Lease once its holder has not renewed it for this long.
    lease_seconds: int = 15
    # The leader stops acting once it has not renewed the Lease for this long: before any other
    # replica may take it.
    renew_deadline_seconds: float = 10.0
    # How often the leader renews, and a standby tries to take the Lease.
    retry_period_seconds: float = 2.0


@dataclass(frozen=True)
class Settings:
    # The namespaces served; empty: every namespace (cluster-wide).
    namespaces: tuple[str, ...] = ()
    # Passes of different runs at once (the threads of the pool, and the HTTP connections they use).
    workers: int = 16
    # The client-side rate limit of every request but the Lease's (ratelimit.py): a token bucket
    # of `burst` tokens refilled at `qps` a second. qps <= 0: no limit.
    qps: float = 200.0
    burst: int = 400
    # The longest a run that has not finished goes without a pass when nothing about it changes:
    # the safety net under the watches (a lost event, a clock-driven step missed). A pass that
    # finds nothing new sends no request; it costs CPU, one pass per running run per period.
    resync_seconds: float = 30.0
    orphans: OrphanPolicy = field(default_factory=OrphanPolicy)
    # The liveness answer fails after passes have been due this long with none finishing (or a
    # watch failing this long) while the API server answers (health.py).
    stall_seconds: float = 300.0
    # None: this process reconciles from the start, alone (one replica).
    leader_election: LeaderElection | None = None

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def watched(self) -> list[str | None]:
        """What each informer watches: each namespace, or None for all of them."""
        return [None] if self.clusterwide else list(self.namespaces)
