"""Turn a fetched page into text: HTML through trafilatura, plain text as is, PDF
with pypdf when installed; anything else is refused with a reason.

Extraction runs in a worker process under its own time limit, apart from the HTTP
timeout: trafilatura can spin for minutes on a pathological page, and a thread
cannot be stopped, but a process can.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from pydantic import BaseModel

from .fetch import FetchedPage, FetchError

__all__ = ["Extractor", "ExtractedPage"]


class ExtractedPage(BaseModel):
    url: str
    title: str = ""
    date: str = ""
    text: str


def _html_to_text(html: str, url: str) -> tuple[str, str, str]:
    import trafilatura

    out = trafilatura.extract(
        html,
        url=url,
        output_format="json",
        with_metadata=True,
        include_comments=False,
        include_tables=True,
    )
    if not out:
        return "", "", ""
    data = json.loads(out)
    return data.get("text") or "", data.get("title") or "", data.get("date") or ""


def _pdf_to_text(body: bytes) -> str:
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(body))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


class Extractor:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing as mp

            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
        return self._pool

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, url: str, fn, *args):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor(), fn, *args), self.timeout_s
            )
        except TimeoutError:
            self._kill_pool()  # the worker may be spinning: stop it, start afresh next time
            raise FetchError(url, f"text extraction took longer than {self.timeout_s:g}s") from None
        except BrokenProcessPool:
            self._kill_pool()
            raise FetchError(url, "the text extractor crashed on this page") from None

    async def extract(self, page: FetchedPage) -> ExtractedPage:
        url = page.final_url
        ctype = page.content_type
        if ctype in ("text/html", "application/xhtml+xml") or (
            not ctype and "<html" in page.text[:2000].lower()
        ):
            text, title, date = await self._run(url, _html_to_text, page.text, url)
            if not text.strip():
                raise FetchError(url, "no readable text in the HTML")
            return ExtractedPage(url=url, title=title, date=date, text=text)
        if ctype in ("text/plain", "text/markdown") or not ctype:
            if not page.text.strip():
                raise FetchError(url, "empty page")
            return ExtractedPage(url=url, text=page.text)
        if ctype == "application/pdf":
            try:
                import pypdf  # noqa: F401
            except ImportError:
                raise FetchError(url, "PDF pages need `pip install pypdf`") from None
            text = await self._run(url, _pdf_to_text, page.body)
            return ExtractedPage(url=url, text=text)
        raise FetchError(url, f"unsupported content type {ctype}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
