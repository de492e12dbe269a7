"""Batch jobs on Ray: one replica (a Ray actor holding its own engine) per slot, and
jobs handed out one at a time as replicas free up.

The driver keeps everything that must not be lost or repeated: it writes each result
as it arrives (the caller's ``on_result``), so a killed replica costs only the jobs
it had in flight, which go back on the queue for the others. Ray is an optional
extra, imported only here and only when ``--ray`` is given.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from agent.errors import ConfigError, DependencyMissingError, EngineError

__all__ = ["ReplicaPool", "ray_module", "connect", "PASSED_ENV"]

# What a replica on another node must see as the driver does: where the models and
# indexes are, offline hub use, and vLLM's CPU settings.
PASSED_ENV = ("SPLICE_", "HF_", "VLLM_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_")


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise DependencyMissingError("Ray (for --ray)", "pip install 'splice[ray]'") from None
    return ray


def connect(address: str, *, num_cpus: int | None = None, verbose: bool = False) -> Any:
    """``auto``: the running cluster (``RAY_ADDRESS`` or a local one), else a new local
    one; anything else: the cluster at that address."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": env},
        "include_dashboard": False,
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    try:
        if address != "auto":
            ray.init(address=address, **kwargs)
            return ray
        try:  # RAY_ADDRESS, or a cluster already running on this machine
            ray.init(address="auto", **kwargs)
        except ConnectionError:
            # A new local cluster. Ray starts its workers at nice 15 by default, which
            # would put the replicas' engines behind any other work on the machine.
            ray.init(num_cpus=num_cpus, _system_config={"worker_niceness": 0}, **kwargs)
    except ConnectionError as exc:
        raise ConfigError(
            f"no Ray cluster at {address!r} ({exc}): start one with `ray start --head`, "
            "or pass --ray auto for a local one"
        ) from None
    return ray


class _Replica:
    """A Ray actor: ``build()`` makes its worker (an engine and what runs on it) once,
    then ``run(job)`` awaits ``worker.run(job)``, many at a time."""

    def __init__(self, build: Callable[[], Awaitable[Any]]) -> None:
        self.build = build
        self.worker: Any = None

    async def setup(self) -> int:
        self.worker = await self.build()
        return os.getpid()

    async def run(self, job: Any) -> Any:
        return await self.worker.run(job)

    async def close(self) -> None:
        if hasattr(self.worker, "aclose"):
            await self.worker.aclose()


class ReplicaPool:
    """``replicas`` actors, each built by ``build`` (a picklable async factory) with
    ``num_cpus``/``num_gpus`` each, ``per_replica`` jobs in flight on each."""

    def __init__(
        self,
        build: Callable[[], Awaitable[Any]],
        *,
        replicas: int,
        per_replica: int,
        num_cpus: float = 1,
        num_gpus: float = 0,
    ) -> None:
        if replicas < 1 or per_replica < 1:
            raise ConfigError("--replicas and --concurrency must be at least 1")
        self.ray = ray_module()
        actor = self.ray.remote(_Replica).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0, max_concurrency=1000
        )
        self.actors = [actor.remote(build) for _ in range(replicas)]
        self.per_replica = per_replica
        self.pids: list[int] = []
        self.lost: list[int] = []

    async def start(self) -> list[int]:
        """Build every replica (each starts its engine); their process ids."""
        errors = self.ray.exceptions
        try:
            self.pids = list(await asyncio.gather(*(a.setup.remote() for a in self.actors)))
        except errors.RayTaskError as exc:
            raise _unwrap(exc) from None
        except errors.RayError as exc:  # killed, for one: Ray's memory monitor, say
            raise EngineError(
                f"a replica died while starting its engine ({str(exc).splitlines()[0]}): "
                "try fewer --replicas, or free memory on the node"
            ) from None
        return self.pids

    async def map(
        self,
        jobs: Iterable[Any],
        on_result: Callable[[Any, Any], None],
        on_lost: Callable[[int, str], None] | None = None,
    ) -> None:
        """Run every job on some replica; ``on_result(job, result)`` in the driver as
        each finishes. A replica that dies gives its in-flight jobs back to the queue;
        if none is left, the jobs not yet run raise :class:`EngineError`."""
        queue = deque(jobs)
        errors = self.ray.exceptions

        async def feed(i: int, actor: Any) -> None:
            while queue and i not in self.lost:
                job = queue.popleft()
                try:
                    result = await actor.run.remote(job)
                except (
                    errors.RayActorError,
                    errors.ActorDiedError,
                    errors.OutOfMemoryError,
                ) as exc:
                    queue.appendleft(job)
                    if i not in self.lost:
                        self.lost.append(i)
                        if on_lost:
                            on_lost(i, str(exc).splitlines()[0])
                    return
                except errors.RayTaskError as exc:
                    raise _unwrap(exc) from None
                on_result(job, result)

        await asyncio.gather(
            *(feed(i, a) for i, a in enumerate(self.actors) for _ in range(self.per_replica))
        )
        if queue:
            raise EngineError(
                f"every replica failed with {len(queue)} questions left: the finished ones "
                "are kept; run the same command with --resume to continue"
            )

    async def close(self) -> None:
        for i, actor in enumerate(self.actors):
            if i not in self.lost:
                try:
                    await asyncio.wait_for(actor.close.remote(), 60)
                except Exception:  # a replica that is already gone needs no closing
                    pass
            self.ray.kill(actor)


def _unwrap(exc: Any) -> BaseException:
    """The replica's own exception (a SpliceError keeps its one-line message)."""
    cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
    inner = getattr(exc, "cause", None)
    return inner if isinstance(inner, BaseException) else cause
