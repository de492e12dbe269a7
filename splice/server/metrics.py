"""Prometheus metrics for ``splice serve``, in a registry of their own (a process
may run more than one app, as the tests do)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServerMetrics"]


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "splice_requests", "Chat completion requests, by outcome.", ["status"], registry=r
        )
        self.in_flight = Gauge("splice_requests_in_flight", "Requests being answered.", registry=r)
        self.latency = Histogram(
            "splice_request_seconds",
            "Time to the last byte of a chat completion.",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.first_token = Histogram(
            "splice_time_to_first_token_seconds",
            "Time to the first streamed byte of the answer.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.searches = Counter("splice_searches", "Tool calls made by the model.", registry=r)
        self.abstentions = Counter(
            "splice_abstentions", 'Answers that were "I don\'t know".', registry=r
        )
        self.tokens = Counter(
            "splice_tokens", "Tokens by kind: prompt, cached, generated.", ["kind"], registry=r
        )
        self.aborted = Counter(
            "splice_aborted", "Streams whose client went away before the end.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
