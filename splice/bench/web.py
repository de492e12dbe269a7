"""``splice bench web``: concurrent fetching against local servers with set latencies.

Five servers on 127.0.0.1–127.0.0.5 (four pages each, the per-host limit) serve 20
pages whose latencies are spread evenly up to ``slowest_s``. Figures, from one run:
- concurrent: wall time for all 20 pages over the slowest page fetched alone (goal ≤ 1.2);
- hanging: a page that never finishes, fetched beside the 20, over its timeout
  (goal ≤ 1, plus scheduling noise).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import ExitStack

from agent.settings import WebSettings
from retrieval.web.fetch import Fetcher, FetchError

from .report import BenchReport
from .webpages import LocalWeb

__all__ = ["WebBench", "run_web_bench"]


class WebBench(BenchReport):
    pages: int
    slowest_s: float
    single_slowest_s: float
    concurrent_s: float
    concurrent_ratio: float
    hang_timeout_s: float
    hang_wall_s: float
    hang_ratio: float
    fetched: int

    def title(self) -> str:
        return f"splice bench web: {self.pages} pages on 5 local servers"

    def columns(self) -> list[str]:
        return ["figure", "measured", "ratio", "goal"]

    def table_rows(self) -> list[list[str]]:
        return [
            [
                f"{self.pages} pages at once vs the slowest alone "
                f"({self.concurrent_s:.2f}s / {self.single_slowest_s:.2f}s)",
                f"{self.fetched}/{self.pages} fetched",
                f"{self.concurrent_ratio:.3f}",
                "≤ 1.2",
            ],
            [
                f"a never-finishing page beside them vs its timeout "
                f"({self.hang_wall_s:.2f}s / {self.hang_timeout_s:.2f}s)",
                "timed out",
                f"{self.hang_ratio:.3f}",
                "≤ 1 (+ noise)",
            ],
        ]


def run_web_bench(
    *,
    pages: int = 20,
    slowest_s: float = 1.0,
    hang_timeout_s: float = 2.0,
    log: Callable[[str], None] = print,
) -> WebBench:
    async def main() -> WebBench:
        with ExitStack() as stack:
            servers = [stack.enter_context(LocalWeb(f"127.0.0.{i}")) for i in range(1, 6)]
            hosts = [f"{w.host}:{w.port}" for w in servers]
            latency = [slowest_s * (i + 1) / pages for i in range(pages)]
            urls = [
                servers[i % 5].url(f"/slow?ms={int(1000 * s)}&n={i}") for i, s in enumerate(latency)
            ]
            settings = WebSettings(
                allow_hosts=hosts,
                total_timeout_s=hang_timeout_s,
                read_timeout_s=hang_timeout_s * 2,
                per_host=4,
                concurrency=32,
                no_cache=True,
            )

            log("warming up (robots.txt per host, connections)…")
            fetcher = Fetcher(settings)
            await asyncio.gather(*(fetcher.fetch(w.url("/slow?ms=0")) for w in servers))
            log(f"the slowest page alone ({slowest_s:g}s of server latency)…")
            t0 = time.perf_counter()
            await fetcher.fetch(urls[-1] + "&alone=1")
            single = time.perf_counter() - t0

            log(f"{pages} pages at once…")
            t0 = time.perf_counter()
            got = await asyncio.gather(
                *(fetcher.fetch(u + "&batch=1") for u in urls), return_exceptions=True
            )
            concurrent = time.perf_counter() - t0
            fetched = sum(not isinstance(g, BaseException) for g in got)

            log(f"{pages} pages plus one that never finishes (timeout {hang_timeout_s:g}s)…")
            t0 = time.perf_counter()
            hang = asyncio.create_task(fetcher.fetch(servers[0].url("/hang")))
            await asyncio.gather(
                *(fetcher.fetch(u + "&batch=2") for u in urls), return_exceptions=True
            )
            try:
                await hang
                raise AssertionError("the hanging page finished")
            except FetchError:
                pass
            hang_wall = time.perf_counter() - t0
            await fetcher.aclose()
        return WebBench(
            pages=pages,
            slowest_s=slowest_s,
            single_slowest_s=single,
            concurrent_s=concurrent,
            concurrent_ratio=concurrent / single,
            hang_timeout_s=hang_timeout_s,
            hang_wall_s=hang_wall,
            hang_ratio=hang_wall / hang_timeout_s,
            fetched=fetched,
        )

    return asyncio.run(main())
