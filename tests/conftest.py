"""Shared fixtures: one prepared model, one in-process vLLM engine and one
``vllm serve`` per test session (each start costs about a minute on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# Several engines run at once (in-process, `vllm serve`, `splice serve`, and the ones
# tests start in subprocesses): 1 GiB of KV cache each is ample for 1024-token
# contexts, and keeps the suite within a 24 GiB machine.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

MAX_MODEL_LEN = 1024
KEY = "test-key"
ROOT = Path(__file__).resolve().parent.parent
SERVER_LOG: dict[str, Path] = {}


@pytest.fixture(scope="session")
def splice_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SPLICE_HOME for the whole session, with the default model prepared once."""
    from splice.defaults import prepare_default

    home = tmp_path_factory.mktemp("splice-home")
    old = os.environ.get("SPLICE_HOME")
    os.environ["SPLICE_HOME"] = str(home)
    prepare_default(home)
    yield home
    if old is None:
        os.environ.pop("SPLICE_HOME", None)
    else:
        os.environ["SPLICE_HOME"] = old


@pytest.fixture(scope="session")
def model_dir(splice_home: Path) -> Path:
    from serving.prepare import default_model_dir

    return default_model_dir(splice_home)


@pytest.fixture(scope="session")
def vllm_engine(model_dir: Path):
    from serving.vllm_engine import VLLMConfig, VLLMEngine

    engine = VLLMEngine.start(VLLMConfig(model=str(model_dir), max_model_len=MAX_MODEL_LEN))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def model_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from serving.model_server import ModelServer
    from serving.vllm_engine import VLLMConfig

    log = tmp_path_factory.mktemp("server") / "vllm-serve.log"
    server = ModelServer(
        VLLMConfig(model=str(model_dir), max_model_len=MAX_MODEL_LEN), log_path=log
    )
    server.start(timeout=600)
    yield server
    server.stop()


@pytest.fixture
async def http_engine(model_server):
    from serving.http_engine import HTTPEngine

    engine = await HTTPEngine.connect(model_server.url)
    yield engine
    await engine.aclose()


def chat_ids(tokenizer, question: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def replayer(tokenizer):
    """Replays training trajectories through the agent loop (the scripted engine)."""
    from training.trajectories import Replayer

    r = Replayer(tokenizer)
    yield r
    r.close()


@pytest.fixture(scope="session")
def embedder():
    """The bundled MiniLM, loaded once (about 2 s)."""
    from retrieval import Embedder

    emb = Embedder()
    assert emb.dim == 384
    return emb


@pytest.fixture(scope="session")
def kb_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in knowledge base indexed once per session, as `splice prepare` does,
    in a home of its own."""
    from splice.defaults import ensure_kb_index

    path, built = ensure_kb_index(tmp_path_factory.mktemp("kb-home"))
    assert built
    return path


@pytest.fixture(scope="session")
def splice_server(splice_home: Path, kb_index: Path, tmp_path_factory) -> Iterator[str]:
    """`splice serve` on the prepared model and knowledge base, with an API key."""
    from serving.model_server import free_port

    port = free_port()
    log = SERVER_LOG["serve"] = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "SPLICE_HOME": str(splice_home), "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "splice", "serve", "--port", str(port), "--api-key", KEY,
        "--index", str(kb_index), "--max-concurrency", "1", "--max-queue", "0",
        "--max-model-len", str(MAX_MODEL_LEN),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "splice serve did not become healthy"
            try:
                r = httpx.get(url + "/health", timeout=2)
                if r.status_code == 200:
                    break
                assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)
