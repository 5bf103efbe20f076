"""The kopf wiring, and nothing else: kopf runs the process (signals, the event loop, the liveness
endpoint); its start-up handler makes the Runtime from the settings kopf's memo carries, its
cleanup handler stops it, its probes report on progress, the API server and leadership. kopf
watches no resource: the operator's own informers do (caches.py), so kopf never patches, annotates
or puts a finalizer on anything; and kopf runs standalone (cli.py), without its peering, which
would pause a whole operator, caches included, rather than elect one (election.py does)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kopf

from flowrun.controller.failures import Backoff
from flowrun.controller.runtime import Runtime
from flowrun.controller.settings import Settings
from flowrun.kube import Fence, FencedApiClient, Kube, ThrottledApiClient, connect
from flowrun.ratelimit import TokenBucket

# The operator's handlers, in a registry of their own (importing this module registers nothing
# globally).
REGISTRY = kopf.OperatorRegistry()


class RetryForever:
    """kopf's request backoffs: 1, 2, 4, 8 seconds, then every 10 seconds, for ever. Iterable
    afresh for each request (kopf iterates its backoffs once per request) and without a length
    (kopf then counts no last attempt)."""

    def __iter__(self) -> Iterator[float]:
        backoff = Backoff(1.0, 10.0)
        while True:
            yield backoff.next()


@kopf.on.login(registry=REGISTRY)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own credentials (it reads the API's discovery at start, scanning or not): those of the
    kubeconfig or the ServiceAccount, as the operator's client finds them. A registry of one's own
    gets none of kopf's default login handlers, and kopf stops at once without one."""
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=REGISTRY)
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf serves no resource here, so it needs no scan of namespaces or CRDs (which the
    # namespace-scoped RBAC would refuse, and kopf would retry for a minute before starting).
    settings.scanning.disabled = True
    # kopf's own requests (its discovery at start, whose failure stops the whole operator) are
    # retried for as long as the API server is away, not 9 times: an operator started during an
    # outage waits for the API server, as its passes do.
    settings.networking.error_backoffs = RetryForever()
    # The operator posts its own events, one per transition; kopf's per-handler events are noise.
    settings.posting.enabled = False
    operator: Settings = memo.settings
    # One connection per worker, a few for everything else (the informers and the Lease have pools
    # of their own). Every write goes through the fence: leader election closes it on a standby. A
    # write the fence refuses takes no token of the rate limit, which every pool but the Lease's
    # shares.
    fence = Fence()
    limit = TokenBucket(operator.qps, operator.burst)
    api_client = FencedApiClient(ThrottledApiClient(connect(pool_size=operator.workers + 4), limit), fence)
    memo.runtime = Runtime(operator, Kube(api_client, limit=limit), fence)
    memo.runtime.start()


@kopf.on.cleanup(registry=REGISTRY)
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        await runtime.stop()


@kopf.on.probe(id="progress", registry=REGISTRY)
async def progress(memo: kopf.Memo, **_: Any) -> str:
    """The liveness endpoint answers 500 when the operator is wedged (health.py)."""
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is None:
        return "starting"
    health = await runtime.health()
    if not health.ok:
        raise kopf.PermanentError(health.message)
    return health.message


@kopf.on.probe(id="apiServer", registry=REGISTRY)
async def api_server(memo: kopf.Memo, **_: Any) -> str:
    """Reported in the liveness endpoint's answer. An outage does not fail liveness: restarting the
    operator would not bring the API server back."""
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is None:
        return "starting"
    since = runtime.outage_started()
    if since is None:
        return "reachable"
    return f"unreachable for {runtime.loop.time() - since:.0f}s"


@kopf.on.probe(id="leader", registry=REGISTRY)
async def leader(memo: kopf.Memo, **_: Any) -> str:
    """Reported in the liveness endpoint's answer: whether this replica leads, or who does."""
    runtime: Runtime | None = getattr(memo, "runtime", None)
    return "starting" if runtime is None else runtime.leadership()
