"""A tiny fine-tuning run end to end: train a few steps (interrupted, then resumed),
merge, serve the result with vLLM, and check the tool tokens survived."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import torch

from agent.engine import SamplingParams
from agent.errors import ConfigError
from agent.protocols import Message
from agent.protocols.splice import SPECIAL_TOKENS
from serving.merge import merge_adapter
from serving.prepare import base_model_dir
from training.sft import SFTConfig, train
from training.trajectories import Example, Replayer

pytestmark = pytest.mark.vllm

QUESTIONS = [
    "Where is the Varn Point beacon?",
    "Who keeps the Varn Point beacon?",
    "When was the Varn Point beacon lit?",
    "What powers the Varn Point beacon?",
]


class Interrupt(Exception):
    pass


class _Trap:
    """Unpickling this runs code: it touches ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_tiny_finetune_resume_merge_and_serve(splice_home: Path, tokenizer, tmp_path: Path) -> None:
    base = base_model_dir(splice_home)
    replayer = Replayer(tokenizer)
    examples = []
    for n, q in enumerate(QUESTIONS):
        # short sequences keep the run fast: a closed-book prompt, a search as the target
        prompt = replayer.agent.prompt_ids([Message(role="user", content=q)], use_tools=False)
        target = replayer.search("Varn Point")
        ids, mask = prompt + target, [False] * len(prompt) + [True] * len(target)
        examples.append(
            Example(
                id=f"e{n}",
                kind="tools-answer",
                source_id=f"q{n}",
                tools=False,
                input_ids=ids,
                loss_mask=mask,
            )
        )
    replayer.close()
    cfg = SFTConfig(max_steps=8, micro_batch=4, grad_accum=1, lr=5e-3, warmup_steps=0, save_every=4)

    def stop_at_6(step: int, total: int, loss: float, tokens: int) -> None:
        if step == 6:
            raise Interrupt

    out = tmp_path / "sft"
    with pytest.raises(Interrupt):
        train(base, examples, out, cfg, on_step=stop_at_6)
    state = out / "checkpoint" / "state.pt"
    assert state.is_file() and not (out / "adapter").exists()
    # A checkpoint holding a pickled object is refused in one line, never run.
    good = state.read_bytes()
    marker = tmp_path / "ran"
    torch.save({"step": _Trap(marker)}, state)
    with pytest.raises(ConfigError, match="rerun without --resume") as info:
        train(base, examples, out, cfg, resume=True)
    assert not marker.exists() and "\n" not in str(info.value)
    state.write_bytes(good)
    result = train(base, examples, out, cfg, resume=True)
    assert result.resumed_from == 4 and result.steps == 8 and len(result.losses) == 8
    assert result.losses[-1] < result.losses[0]
    assert not (out / "checkpoint").exists()
    size = (result.adapter / "adapter_model.safetensors").stat().st_size
    assert size < 20 * 2**20

    merged = tmp_path / "merged"
    ids = merge_adapter(base, result.adapter, merged, SPECIAL_TOKENS)
    # sync test: the replayer runs its own event loop, so vLLM gets a private one too
    asyncio.new_event_loop().run_until_complete(_serve_and_check(merged, ids, examples[0]))


async def _serve_and_check(merged: Path, ids: dict[str, int], example: Example) -> None:
    from serving.vllm_engine import VLLMConfig, VLLMEngine

    engine = VLLMEngine.start(VLLMConfig(model=str(merged), max_model_len=1024))
    try:
        tok = engine.tokenizer
        for t in SPECIAL_TOKENS:
            assert tok.encode(t, add_special_tokens=False) == [ids[t]]
        # the tuned model opens a search by itself and generation stops on </search>
        prompt = example.input_ids[: example.loss_mask.index(True)]
        done = await engine.complete(
            prompt, SamplingParams(max_tokens=16, stop_token_ids=(ids["</search>"],))
        )
        assert done.token_ids[0] == ids["<search>"]
        assert done.finish_reason == "stop" and done.token_ids[-1] == ids["</search>"]
        assert "Varn Point" in tok.decode(done.token_ids[1:-1])
    finally:
        await engine.aclose()


def test_prepare_merges_an_adapter_and_notices_a_new_one(splice_home: Path, tmp_path: Path) -> None:
    """`splice prepare` merges the adapter it is given, records its digest, and rebuilds
    when the adapter changes; the base model stays untouched."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    from serving.prepare import default_model_dir, load_manifest
    from splice.defaults import prepare_default as prepare

    base = base_model_dir(splice_home)
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copytree(base, base_model_dir(home))  # skip the GGUF conversion

    def make_adapter(path: Path, seed: int) -> Path:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        cfg = peft.LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
        peft.get_peft_model(model, cfg).save_pretrained(path)
        return path

    first = prepare(home, adapter=make_adapter(tmp_path / "a1", 0))
    assert first.built and first.manifest.adapter and first.base == base_model_dir(home)
    again = prepare(home, adapter=tmp_path / "a1")
    assert not again.built
    notices: list[str] = []
    second = prepare(home, adapter=make_adapter(tmp_path / "a2", 1), on_notice=notices.append)
    assert second.built and second.reason == "adapter changed"
    assert second.manifest.adapter != first.manifest.adapter and len(notices) == 1
    assert load_manifest(base_model_dir(home)).adapter is None
    a = load_file_tensor(default_model_dir(home), "model.layers.0.self_attn.q_proj.weight")
    b = load_file_tensor(base_model_dir(home), "model.layers.0.self_attn.q_proj.weight")
    assert not torch.equal(a, b)  # the merge changed the weights it targets


def load_file_tensor(model_dir: Path, name: str):
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")[name]
