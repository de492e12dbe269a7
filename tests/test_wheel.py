"""A non-editable wheel carries the built-in data and the shipped adapter, and the
installed ``splice`` finds them outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (whl,) = out.glob("splice-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed and, for its
    dependencies, this environment's site-packages on the path (a .pth line: the
    editable install's own finder there is not run, so only the wheel's code is seen)."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = Path(
        sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_dir / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return env_dir


def test_wheel_holds_data_and_adapter(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("evals/data/kb/articles", "evals/data/reading"):
        packed = [n for n in names if n.startswith(folder + "/") and n.endswith(".jsonl")]
        assert len(packed) == len(list((ROOT / folder).glob("*.jsonl"))) > 0, folder
    for needed in (
        "evals/data/trivia.jsonl",
        "evals/data/chat.jsonl",
        "training/adapter/adapter_model.safetensors",
        "training/adapter/adapter_config.json",
        "training/adapter/splice_calibration.json",
        "splice/cli/__init__.py",
    ):
        assert needed in names
    assert not [n for n in names if n.startswith("tests/")]


def test_installed_splice_finds_its_resources_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    python = installed / "bin" / "python"
    probe = (
        "import json, splice, evals.kb as kb, splice.defaults as d;"
        "print(json.dumps({'splice': splice.__file__, 'adapter': str(d.shipped_adapter()),"
        " 'kb': str(kb.data_dir()), 'entries': len(kb.kb_entries()),"
        " 'chat': len(kb.chat_prompts('train')),"
        " 'reading': len(__import__('evals.reading').reading.reading_passages())}))"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for key in ("splice", "adapter", "kb"):
        assert got[key].startswith(str(installed)), got
        assert str(ROOT) not in got[key]
    assert got["entries"] > 300 and got["chat"] > 0 and got["reading"] >= 1000
    help_ = subprocess.run(
        [str(installed / "bin" / "splice"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert help_.returncode == 0 and "prepare" in help_.stdout


@pytest.mark.vllm
def test_installed_splice_prepares_and_answers(
    installed: Path, splice_home: Path, tmp_path: Path
) -> None:
    """`splice prepare` and `splice ask` from the wheel, in a directory of its own."""
    env = {**os.environ, "PYTHONPATH": "", "SPLICE_HOME": str(splice_home)}
    splice = str(installed / "bin" / "splice")
    prep = subprocess.run(
        [splice, "prepare"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900
    )
    assert prep.returncode == 0, prep.stderr
    assert "model up to date (fine-tuned adapter" in prep.stdout
    assert "knowledge base" in prep.stdout
    ask = subprocess.run(
        [
            splice,
            "ask",
            "--json",
            "--search-first",
            "--max-model-len",
            "1024",
            "Which river flows through Vienna?",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    # What the small model answers is not this test's business; that it ran is.
    assert answer["text"] and answer["trace"][0]["type"] == "generation", answer
