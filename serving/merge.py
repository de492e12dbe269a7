"""Merge a LoRA adapter (and its trained token rows) into a base model's weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.errors import DependencyMissingError, PrepareError

__all__ = ["merge_adapter"]


def merge_adapter(
    base: Path, adapter: Path, out: Path, special_tokens: Sequence[str]
) -> dict[str, int]:
    """Merge LoRA and token rows into the base weights; save float32 safetensors.

    Returns the special-token ids, checked to still encode as single ids."""
    try:
        import peft
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise DependencyMissingError("peft/torch", "pip install peft torch") from exc

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = peft.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special_tokens}
    for tok, tid in ids.items():
        if tokenizer.encode(tok, add_special_tokens=False) != [tid]:
            raise PrepareError(f"{tok} is no longer a single id after merging")
    return ids
