"""``splice serve --ray-replicas N``: the same app as N Ray Serve replicas, one
engine each, behind Ray Serve's HTTP proxy and router.

Each replica builds the app itself (``build_app`` runs on the replica), starts its
engine, and joins the router only once the engine is ready. Every response carries
``x-splice-replica`` (the replica's process id), so a client can tell which one
answered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from agent.errors import DependencyMissingError

__all__ = ["deploy_on_ray", "with_replica_header"]


def with_replica_header(build_app: Callable[[], Any]) -> Callable[[], Any]:
    """``build_app``, plus the ``x-splice-replica`` header on every response."""

    def build() -> Any:
        app = build_app()
        pid = str(os.getpid())

        @app.middleware("http")
        async def replica_header(request: Any, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-splice-replica"] = pid
            return response

        return app

    return build


def deploy_on_ray(
    build_app: Callable[[], Any],
    *,
    replicas: int,
    host: str,
    port: int,
    address: str = "auto",
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_ongoing: int = 80,
    verbose: bool = False,
) -> Callable[[], None]:
    """Deploy ``build_app`` (a picklable function returning the FastAPI app) as
    ``replicas`` replicas on ``host:port``, once every replica's engine is ready;
    returns the function that shuts them down."""
    from splice.cluster import connect

    ray = connect(address, verbose=verbose)
    try:
        from ray import serve
    except ImportError:
        raise DependencyMissingError(
            "Ray Serve (for --ray-replicas)", "pip install 'splice[ray]'"
        ) from None
    if not verbose:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(
        serve.ingress(with_replica_header(build_app))(),
        name="splice",
        num_replicas=replicas,
        # Past this many, Ray's router queues; the app's own queue and 429s come first.
        max_ongoing_requests=max_ongoing,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": num_gpus},
    )

    def stop() -> None:
        serve.shutdown()
        ray.shutdown()  # a local cluster started for this command goes with it

    try:
        serve.run(deployment.bind(), name="splice", route_prefix="/")
    except BaseException:
        stop()
        raise
    return stop
