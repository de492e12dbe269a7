"""Batch evals and probes on Ray, against a local Ray cluster started here
(``ray.init(num_cpus=2)``) and real CPU engines, one per replica: a Ray run gives the
records of a local run, a replica killed mid-run costs nothing, and a killed driver's
run resumes without repeating a finished question."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import MAX_MODEL_LEN, ROOT

from evals.records import read_records

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _env(splice_home: Path) -> dict[str, str]:
    return {**os.environ, "SPLICE_HOME": str(splice_home), "PYTHONPATH": str(ROOT)}


def _splice(*args: str) -> list[str]:
    return [sys.executable, "-m", "splice", *args]


def _eval(*args: str) -> list[str]:
    return _splice("eval", "run", *args, "--max-model-len", str(MAX_MODEL_LEN))


def _answers(run: Path) -> dict[tuple, tuple]:
    return {
        (r["dataset"], r["condition"], r["id"]): (r["answer"], r["grade"], r["sources"])
        for r in read_records(run / "records.jsonl")
    }


def test_a_ray_run_gives_the_records_of_a_local_run(
    tmp_path: Path, splice_home: Path, kb_index: Path, ray_address: str
):
    env = _env(splice_home)
    common = ["kb-answerable", "kb-unanswerable", "--condition", "tools,closed-book",
              "--limit", "3", "--index", str(kb_index)]  # fmt: skip
    local = subprocess.run(
        _eval(*common, "--out", str(tmp_path / "local")),
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-2000:]
    on_ray = subprocess.run(
        _eval(*common, "--out", str(tmp_path / "ray"),
                "--ray", ray_address, "--replicas", "2"),
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    a, b = _answers(tmp_path / "local"), _answers(tmp_path / "ray")
    assert len(a) == 12 and a == b
    assert any(sources for _, _, sources in b.values())  # the replicas searched the index
    assert "Traceback" not in on_ray.stderr


def _replicas() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if any("ray::_Replica" in part for part in p.info["cmdline"] or []):
            out.append(p)
    return out


def _wait_for_records(proc: subprocess.Popen, records: Path, count: int) -> None:
    deadline = time.monotonic() + 600
    while not (records.exists() and records.read_bytes().count(b"\n") >= count):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)


def test_a_killed_replica_or_driver_loses_no_finished_question(
    tmp_path: Path, splice_home: Path, ray_address: str
):
    many = 40
    questions = tmp_path / "many.jsonl"
    questions.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "question": f"What is {i} plus {i}?", "answers": [f"{2 * i}"]}
            )
            + "\n"
            for i in range(many)
        )
    )

    def command(run: Path) -> list[str]:
        return _eval(str(questions), "--out", str(run), "--condition",
                       "closed-book", "--concurrency", "1", "--ray", ray_address,
                       "--replicas", "2")  # fmt: skip

    run = tmp_path / "run"
    records = run / "records.jsonl"
    env = _env(splice_home)

    # One replica killed mid-run: the other finishes every question.
    proc = subprocess.Popen(command(run), env=env, stderr=subprocess.PIPE, text=True)
    _wait_for_records(proc, records, 2)
    victim = _replicas()[0]
    engine_procs = victim.children(recursive=True)
    victim.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-2000:]
    assert "was lost" in stderr and "Traceback" not in stderr
    finished = read_records(records)
    assert sorted(r["id"] for r in finished) == sorted(f"q{i}" for i in range(many))
    assert all(r["grade"] != "ERROR" for r in finished)
    assert records.read_bytes().count(b"\n") == many  # none written twice
    _, alive = psutil.wait_procs(engine_procs, timeout=30)
    assert not alive, f"the killed replica's engine outlived it: {alive}"

    # The driver killed mid-run: --resume finishes the rest, repeating nothing.
    run2 = tmp_path / "run2"
    records2 = run2 / "records.jsonl"
    cmd2 = command(run2)
    proc = subprocess.Popen(cmd2, env=env, stderr=subprocess.PIPE, text=True)
    _wait_for_records(proc, records2, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = read_records(records2)
    assert 3 <= len(kept) < many
    done = subprocess.run([*cmd2, "--resume"], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming: {len(kept)} finished" in done.stderr
    again = read_records(records2)
    assert sorted(r["id"] for r in again) == sorted(f"q{i}" for i in range(many))
    assert all(r in again for r in kept)  # finished records are never rewritten
    lines = records2.read_bytes().count(b"\n")
    assert lines == many, f"{lines} lines for {many} questions"


def test_a_probe_on_ray_matches_a_local_probe(tmp_path: Path, splice_home: Path, ray_address: str):
    env = _env(splice_home)
    common = ["kb-train", "--limit", "6", "--k", "3"]
    for name, extra in (("local", []), ("ray", ["--ray", ray_address, "--replicas", "2"])):
        done = subprocess.run(
            _splice("probe", *common, "--out", str(tmp_path / f"{name}.jsonl"), *extra),
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    local, on_ray = ((tmp_path / f"{n}.jsonl").read_text() for n in ("local", "ray"))
    assert local.count("\n") == 6 and local == on_ray


async def _die_while_starting() -> None:
    os._exit(1)  # as Ray's memory monitor's SIGKILL leaves it: no exception, no reply


async def test_a_replica_that_dies_while_starting_is_one_line(ray_address: str):
    from agent.errors import EngineError
    from splice.cluster import ReplicaPool

    pool = ReplicaPool(_die_while_starting, replicas=1, per_replica=1)
    try:
        with pytest.raises(EngineError, match="died while starting its engine") as info:
            await pool.start()
        assert "--replicas" in str(info.value) and "\n" not in str(info.value)
    finally:
        await pool.close()


def test_ray_missing_is_named_in_one_line(tmp_path: Path):
    # As if the extra were not installed: `import ray` fails.
    code = (
        "import sys; sys.modules['ray'] = None; from splice.cli import main; "
        f"sys.argv = ['splice', 'eval', 'run', 'kb-answerable', '--out', {str(tmp_path)!r}, "
        "'--ray', 'auto']; main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode != 0
    assert "pip install 'splice[ray]'" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_embedded_qdrant_index_with_several_replicas_is_refused(tmp_path: Path):
    index = tmp_path / "qdrant-index"
    index.mkdir()
    manifest = {"embedder": "e", "dim": 4, "index_type": "flat", "count": 1, "backend": "qdrant"}
    (index / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run(
        [sys.executable, "-m", "splice", "eval", "run", "kb-answerable", "--out",
         str(tmp_path / "run"), "--condition", "tools", "--index", str(index),
         "--ray", "auto", "--replicas", "2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "one process at a time" in done.stderr and "--replicas 1" in done.stderr


def test_splice_serve_on_two_ray_serve_replicas(
    tmp_path: Path, splice_home: Path, kb_index: Path, ray_address: str
):
    """The same app, endpoints and key check, from two replicas behind Ray Serve's
    router; SIGTERM shuts the replicas and their engines down."""
    import httpx
    from conftest import KEY
    from openai import AuthenticationError, OpenAI

    from serving.model_server import free_port

    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "splice", "serve", "--ray-replicas", "2", "--ray", ray_address,
           "--port", str(port), "--api-key", KEY, "--index", str(kb_index),
           "--max-model-len", str(MAX_MODEL_LEN)]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=_env(splice_home), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while "serving http" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        client = OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        assert [m.id for m in client.models.list()] == ["splice"]
        answered_by = set()
        for _ in range(10):
            raw = client.chat.completions.with_raw_response.create(
                model="splice",
                messages=[{"role": "user", "content": "When was Things Fall Apart published?"}],
            )
            answered_by.add(raw.headers["x-splice-replica"])
            assert raw.parse().choices[0].message.content
        assert len(answered_by) == 2, "every request went to one replica"
        stream = client.chat.completions.create(
            model="splice", messages=[{"role": "user", "content": "Hello!"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
        replicas = [psutil.Process(int(pid)) for pid in answered_by]
        engines = [c for r in replicas for c in r.children(recursive=True)]
    finally:
        proc.terminate()
        proc.wait(120)
    assert proc.returncode == 0, log.read_text()[-3000:]
    _, alive = psutil.wait_procs(replicas + engines, timeout=60)
    assert not alive, f"left running after SIGTERM: {alive}"
