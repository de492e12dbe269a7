"""Web search settings live with every other ``SPLICE_*`` setting, in ``agent.settings``."""

from agent.settings import USER_AGENT, WebSettings

__all__ = ["WebSettings", "USER_AGENT"]
