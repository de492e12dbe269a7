"""Splice's one exception tree.

Every error a user can cause, or fix, is a :class:`SpliceError`. Its message is a
single line that names the problem and the fix; the CLI prints it without a
traceback. Third-party exceptions (vLLM, httpx, transformers) are translated into
this tree at the boundary where they are raised, so callers catch one family.
"""

from __future__ import annotations

__all__ = [
    "SpliceError",
    "ConfigError",
    "DependencyMissingError",
    "ModelNotPreparedError",
    "PrepareError",
    "EngineError",
    "ServerUnreachableError",
    "PromptTooLongError",
    "RetrievalError",
    "IndexNotFoundError",
    "IndexCorruptError",
    "IndexMismatchError",
    "CorpusError",
]


class SpliceError(Exception):
    """Base class: a one-line, user-facing message naming the problem and the fix."""


class ConfigError(SpliceError):
    """A setting or argument is invalid."""


class DependencyMissingError(SpliceError):
    """An optional dependency is not installed; the message names the pip install."""

    def __init__(self, what: str, install: str) -> None:
        self.what = what
        self.install = install
        super().__init__(f"{what} is not installed: run `{install}`")


class ModelNotPreparedError(SpliceError):
    """The default model has not been prepared under SPLICE_HOME."""


class PrepareError(SpliceError):
    """Preparing the default model failed."""


class EngineError(SpliceError):
    """The generation engine failed or was misused."""


class ServerUnreachableError(EngineError):
    """An HTTP model server could not be reached."""

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        suffix = f" ({detail})" if detail else ""
        super().__init__(
            f"cannot reach the model server at {url}{suffix}: start it with "
            "`splice serve-model` or pass the right --url"
        )


class PromptTooLongError(EngineError):
    """A prompt does not fit in the model's context window."""

    def __init__(self, prompt_tokens: int, max_model_len: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_model_len = max_model_len
        self.excess = prompt_tokens - max_model_len + 1
        super().__init__(
            f"the prompt is {prompt_tokens} tokens, {self.excess} over what the "
            f"{max_model_len}-token context window leaves for an answer: shorten "
            "the question or raise --max-model-len"
        )


class RetrievalError(SpliceError):
    """Building, loading or searching a passage index failed."""


class IndexNotFoundError(RetrievalError):
    """No index at the given directory."""

    def __init__(self, path: object, fix: str = "") -> None:
        self.path = path
        super().__init__(
            f"no index at {path}: {fix or 'build one with `splice index build INPUT --out DIR`'}"
        )


class IndexCorruptError(RetrievalError):
    """An index directory is truncated, partial or unreadable."""

    def __init__(self, path: object, detail: str) -> None:
        self.path = path
        super().__init__(f"the index at {path} is damaged ({detail}): rebuild it with "
                         "`splice index build ... --out DIR`")


class IndexMismatchError(RetrievalError):
    """An index was built with another embedder or dimension than the one asked for."""


class CorpusError(RetrievalError):
    """An input corpus file is missing, empty or malformed; names the file and line."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"{where}: {problem}")
