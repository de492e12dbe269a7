"""Splice's one exception tree.

Every error a user can cause, or fix, is a :class:`SpliceError`. Its message is a
single line that names the problem and the fix; the CLI prints it without a
traceback. Third-party exceptions (vLLM, faiss, sqlite, httpx, transformers) are
translated into this tree at the boundary where they are raised, by
:func:`translate_error`, so callers catch one family.

The whole tree lives here, in the base layer, so every package can raise and catch
any of it without importing another package.
"""

from __future__ import annotations

__all__ = [
    "translate_error",
    "first_line",
    "InputError",
    "DatasetError",
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


class InputError(SpliceError):
    """An input file is missing, empty or malformed; the message names the file and line."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"{where}: {problem}")


class DatasetError(InputError):
    """An eval or training data file is malformed."""


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
        super().__init__(
            f"the index at {path} is damaged ({detail}): rebuild it with "
            "`splice index build ... --out DIR`"
        )


class IndexMismatchError(RetrievalError):
    """An index was built with another embedder or dimension than the one asked for."""


class CorpusError(InputError, RetrievalError):
    """An input corpus file is missing, empty or malformed; names the file and line."""


# Where a third-party exception comes from says which branch of the tree it joins,
# unless the call site knows better. Matched on the defining module, so this base
# layer never imports the libraries it translates.
_FAMILIES: tuple[tuple[str, type[SpliceError]], ...] = (
    ("vllm", EngineError),
    ("torch", EngineError),
    ("openai", EngineError),
    ("faiss", RetrievalError),
    ("sqlite3", RetrievalError),
    ("httpx", RetrievalError),
    ("httpcore", RetrievalError),
    ("trafilatura", RetrievalError),
    ("sentence_transformers", ConfigError),
    ("transformers", ConfigError),
    ("huggingface_hub", ConfigError),
    ("datasets", DatasetError),
)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message, or its type name."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def _family(exc: BaseException) -> type[SpliceError]:
    for cls in type(exc).__mro__:
        root = (cls.__module__ or "").split(".")[0]
        for prefix, kind in _FAMILIES:
            if root == prefix:
                return kind
    return SpliceError


def translate_error(
    exc: BaseException,
    what: str,
    *,
    fix: str = "",
    kind: type[SpliceError] | None = None,
) -> SpliceError:
    """Turn any exception into a one-line member of the tree.

    ``what`` says what was being done ("vLLM could not start m"), ``fix`` what the
    user can do. A :class:`SpliceError` passes through unchanged. The class is
    ``kind`` when given, else chosen by the library the exception comes from. Raise
    the result ``from exc`` to keep the chain for ``-v`` debugging.
    """
    if isinstance(exc, SpliceError):
        return exc
    cls = kind or _family(exc)
    message = f"{what}: {first_line(exc)}" if what else first_line(exc)
    if fix:
        message += f"; {fix}"
    if cls in (InputError, DatasetError, CorpusError):
        return cls(what, first_line(exc) + (f"; {fix}" if fix else ""))
    return cls(message)
