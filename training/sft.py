"""``splice train sft``: LoRA fine-tuning on the self-interrogation trajectories.

LoRA on every attention and MLP projection, plus peft's trainable-token rows for the
six protocol tokens only (the rest of the embedding stays frozen; the tied output
head sees the same rows). Loss is cross-entropy on the sampled ids alone: the prompt
and the contents of ``<information>`` blocks carry none. The output head runs only
at those positions, which skips most of the 49k-way projection on CPU.

Micro-batches group examples of similar length (little padding), in an order fixed
by the seed, so ``--resume`` continues exactly where a checkpoint left off.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.confidence import CALIBRATION_FILE
from agent.errors import ConfigError, DependencyMissingError, first_line
from agent.protocols.splice import SPECIAL_TOKENS

from .trajectories import Example

__all__ = ["SFTConfig", "TrainResult", "train", "ship_adapter", "micro_batches", "TARGET_MODULES"]

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoint"


class SFTConfig(BaseModel):
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    micro_batch: int = Field(4, ge=1)
    grad_accum: int = Field(4, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(5, ge=0)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    max_len: int = Field(1024, ge=16, description="Longer examples are dropped (reported).")
    save_every: int = Field(20, ge=1, description="Checkpoint every N optimizer steps.")
    seed: int = 0
    threads: int | None = Field(None, description="torch CPU threads [default: all cores].")


class TrainResult(BaseModel):
    adapter: Path
    steps: int
    examples: int
    target_tokens: int
    seconds: float
    final_loss: float | None
    losses: list[float]
    device: str
    resumed_from: int = 0


def micro_batches(lengths: Sequence[int], size: int, seed: int) -> list[list[int]]:
    """Indices grouped into micro-batches of similar length, in a seeded order."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    window = size * 16  # sort within windows: similar lengths, still shuffled overall
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[j : j + size] for j in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _imports() -> tuple[Any, Any]:
    try:
        import peft
        import torch
    except ImportError as exc:
        raise DependencyMissingError("peft/torch", "pip install peft torch") from exc
    return torch, peft


def _special_ids(tokenizer: Any) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]


def _lora_model(base: Path, cfg: SFTConfig, device: str) -> tuple[Any, Any]:
    torch, peft = _imports()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
    lcfg = peft.LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(TARGET_MODULES),
        task_type="CAUSAL_LM",
        trainable_token_indices={"embed_tokens": _special_ids(tokenizer)},
    )
    return peft.get_peft_model(model, lcfg), tokenizer


def _batch_loss(model: Any, rows: Sequence[Example], pad_id: int, device: str) -> Any:
    """Summed cross-entropy over the sampled ids of a micro-batch."""
    torch, _ = _imports()
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    want = torch.zeros((len(rows), width), dtype=torch.bool)
    for b, r in enumerate(rows):
        n = len(r.input_ids)
        ids[b, :n] = torch.tensor(r.input_ids)
        attn[b, :n] = 1
        want[b, :n] = torch.tensor(r.loss_mask)
    ids, attn, want = ids.to(device), attn.to(device), want.to(device)
    # position t predicts id t+1: the loss sits on positions whose next id was sampled
    src = torch.zeros_like(want)
    src[:, :-1] = want[:, 1:]
    causal = model.base_model.model  # LlamaForCausalLM with LoRA/trainable-token layers
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    with autocast:
        hidden = causal.model(input_ids=ids, attention_mask=attn).last_hidden_state
        logits = causal.lm_head(hidden[src]).float()
    targets = ids[:, 1:][want[:, 1:]]
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


def _save_adapter(model: Any, out: Path, *, half: bool) -> None:
    """Save the adapter; ``half`` stores float16 (the shipped adapter must stay small)."""
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if half:
        f = tmp / "adapter_model.safetensors"
        save_file({k: v.half().contiguous() for k, v in load_file(f).items()}, f)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def train(
    base: Path,
    examples: Sequence[Example],
    out_dir: Path,
    cfg: SFTConfig,
    *,
    resume: bool = False,
    on_step: Callable[[int, int, float, int], None] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> TrainResult:
    """Train; checkpoint every ``cfg.save_every`` steps; save ``out_dir/adapter``.

    ``on_step(step, total, loss, tokens)`` is called after each optimizer step.
    """
    torch, peft = _imports()
    from safetensors.torch import load_file

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kept = [e for e in examples if len(e.input_ids) <= cfg.max_len and e.target_tokens]
    if len(kept) < len(examples):
        log(
            f"dropped {len(examples) - len(kept)} example(s) longer than --max-len "
            f"{cfg.max_len} or without targets"
        )
    if not kept:
        raise ConfigError("no training examples: build them with `splice train data`")

    model, tokenizer = _lora_model(base, cfg, device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = micro_batches([len(e.input_ids) for e in kept], cfg.micro_batch, cfg.seed)
    per_epoch = math.ceil(len(batches) / cfg.grad_accum)
    total = cfg.max_steps or max(1, math.ceil(per_epoch * cfg.epochs))
    schedule = [batches[i % len(batches)] for i in range(total * cfg.grad_accum)]

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:  # linear warmup, cosine to 10%
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT_DIR
    start, losses = 0, []
    if resume:
        state_file = ckpt / "state.pt"
        if not state_file.is_file():
            raise ConfigError(f"nothing to resume: no checkpoint in {ckpt}")
        # Tensors and plain containers only: a checkpoint can never run code on load.
        try:
            state = torch.load(state_file, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise ConfigError(
                f"{state_file} is damaged or holds more than tensors "
                f"({first_line(exc)[:120]}): rerun without --resume"
            ) from None
        if state["config"] != cfg.model_dump(mode="json") or state["examples"] != len(kept):
            raise ConfigError(
                "the checkpoint was made with other settings or data: "
                "rerun without --resume, or with the same options"
            )
        peft.set_peft_model_state_dict(
            model, load_file(ckpt / ADAPTER_DIR / "adapter_model.safetensors")
        )
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, losses = state["step"], state["losses"]
        log(f"resumed at step {start} of {total}")

    model.train()
    t0 = time.perf_counter()
    seen_ids = 0  # for the ids/s the progress bar shows
    for step in range(start, total):
        group = schedule[step * cfg.grad_accum : (step + 1) * cfg.grad_accum]
        n_targets = sum(kept[i].target_tokens for b in group for i in b)
        step_loss = 0.0
        for b in group:
            loss = _batch_loss(model, [kept[i] for i in b], pad, device)
            (loss / n_targets).backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss / n_targets)
        seen_ids += sum(len(kept[i].input_ids) for b in group for i in b)
        if on_step:
            on_step(step + 1, total, losses[-1], seen_ids)
        if (step + 1) % cfg.save_every == 0 and step + 1 < total:
            tmp = out_dir / (CHECKPOINT_DIR + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            model.save_pretrained(tmp / ADAPTER_DIR)
            torch.save(
                {
                    "step": step + 1,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": torch.get_rng_state(),
                    "losses": losses,
                    "config": cfg.model_dump(mode="json"),
                    "examples": len(kept),
                },
                tmp / "state.pt",
            )
            shutil.rmtree(ckpt, ignore_errors=True)
            tmp.rename(ckpt)

    adapter = out_dir / ADAPTER_DIR
    _save_adapter(model, adapter, half=True)
    result = TrainResult(
        adapter=adapter,
        steps=total,
        examples=len(kept),
        target_tokens=sum(e.target_tokens for e in kept),
        seconds=time.perf_counter() - t0,
        final_loss=losses[-1] if losses else None,
        losses=losses,
        device=device,
        resumed_from=start,
    )
    (out_dir / "train_log.json").write_text(
        json.dumps(
            {
                **result.model_dump(mode="json"),
                "config": cfg.model_dump(mode="json"),
                "base": str(base),
            },
            indent=2,
        )
    )
    shutil.rmtree(ckpt, ignore_errors=True)
    return result


def ship_adapter(adapter: Path, train_log: Path, dest: Path) -> Path:
    """Copy a trained adapter to ``dest`` (the package's shipped adapter), with no
    machine-local paths in its config. A calibration there belonged to the previous
    weights, so it goes: calibrate the new ones on dev (``splice eval calibrate --save``)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / CALIBRATION_FILE).unlink(missing_ok=True)
    shutil.copy2(adapter / "adapter_model.safetensors", dest)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "smollm2-135m-instruct-splice-base"
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dest / "train_log.json").write_text(train_log.read_text())
    return dest
