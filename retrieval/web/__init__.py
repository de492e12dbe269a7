"""Web search and page reading: pluggable backends, safe fetching, extraction, caching.

``WebRetriever`` is the agent's ``search`` tool over the web; ``HybridRetriever``
merges it with a local index.
"""

from .backends import DDGS, Brave, SearchBackend, SearchError, SearchResult, SearxNG, Tavily
from .cache import ReplayMissError, WebCache
from .extract import ExtractedPage, Extractor
from .fetch import FetchedPage, Fetcher, FetchError
from .guard import BlockedURLError, check_url
from .search import HybridRetriever, WebRetriever
from .settings import WebSettings

__all__ = [
    "WebSettings",
    "WebRetriever",
    "HybridRetriever",
    "SearchBackend",
    "SearxNG",
    "Brave",
    "Tavily",
    "DDGS",
    "SearchResult",
    "SearchError",
    "Fetcher",
    "FetchedPage",
    "FetchError",
    "Extractor",
    "ExtractedPage",
    "WebCache",
    "ReplayMissError",
    "BlockedURLError",
    "check_url",
]
