"""``splice train data``: the self-interrogation training set (step 4 of the recipe).

Inputs: the knowledge base's *training* split (articles, fictional entities in and out
of the corpus), the probe's known/unknown labels, the trivia and chat prompts under
``evals/data`` (training split only), and the base model's own chat replies. Output:
``train.jsonl`` (one :class:`Example` per line: ids and loss mask, plus the decoded
text for reading) and ``README.md``, the data card with counts per kind.

Nothing from the held-out split enters: every source id is checked with
:func:`evals.kb.split_of`, and passages of held-out documents are never used as
distractors either.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.errors import DatasetError
from agent.files import iter_jsonl
from agent.tools import Passage
from evals.grading import normalize
from evals.kb import KBQuestion, builtin_file, chat_prompts, kb_questions, read_rows, split_of
from evals.reading import ReadingPassage, reading_passages, reading_questions
from retrieval.chunking import doc_id_of

from .trajectories import KINDS, Example, Replayer, arrange_passages, query_variants

__all__ = [
    "DataConfig",
    "build_examples",
    "gather_passages",
    "chat_prompts",
    "generate_chat_replies",
    "cached_chat_replies",
    "run_gather",
    "write_dataset",
    "read_dataset",
    "read_probe",
    "read_user_qa",
    "IDENTITY_PROMPTS",
]


IDENTITY_PROMPTS = (
    "Who are you?",
    "What is your name?",
    "what are you",
    "Tell me about yourself.",
    "Are you a human?",
    "What can you do?",
    "Introduce yourself.",
    "who am i talking to?",
    "What should I call you?",
    "Are you ChatGPT?",
    "What kind of assistant are you?",
    "hey, what's your name?",
    "What do you do when you don't know something?",
    "Do you ever make things up?",
)
IDENTITY_REPLIES = (
    "I'm Splice, a careful assistant. I answer from what I know or what I read, and when "
    "I'm not sure I say \"I don't know\" instead of guessing.",
    "My name is Splice. I'm an assistant that answers from what it knows or reads; if I "
    "can't find or don't know an answer, I tell you \"I don't know\".",
    "I'm Splice, an assistant that can search a knowledge base. I never guess: when I'm "
    "not sure, I say so.",
)


class DataConfig(BaseModel):
    seed: int = 0
    tools_answer: int = 450
    tools_absent_unanswerable: int = 120
    tools_absent_removed: int = 80
    closed_unknown: int = 250
    max_known: int = 200
    known_variants: int = 1
    """Wordings per known question (up to 3: as asked, lowercased, prefixed). Few
    questions are known, so more wordings give them more weight against the many
    "I don't know" examples."""
    retrieve_k: int = 12
    reading_answer: int = 0
    """Reading corpus: search, the gold passage among 1-3 (its subject's other passages
    preferred as distractors), answer with the span."""
    reading_absent: int = 0
    """Reading corpus: an adversarial question, the passages retrieved for it (its own
    passage among them when retrieved), "I don't know"."""
    reading_removed: int = 0
    """Reading corpus: an answerable question with its passage removed, "I don't know"."""

    @classmethod
    def from_counts(cls, *, tools_absent: int, **kwargs: Any) -> DataConfig:
        """Split the "answer not in the passages" examples 60/40 between entities
        nobody wrote about and questions whose source was removed from the corpus."""
        unanswerable = tools_absent * 3 // 5
        return cls(
            tools_absent_unanswerable=unanswerable,
            tools_absent_removed=tools_absent - unanswerable,
            **kwargs,
        )


def read_probe(path: Path) -> dict[str, dict[str, Any]]:
    """Probe records by question id (``splice probe`` output)."""
    return {row["id"]: row for row in read_rows(path, ("id", "label"))}


def _trivia(split: str = "train") -> list[dict[str, Any]]:
    rows = read_rows(builtin_file("trivia.jsonl"), ("id", "question", "answers"))
    return [r for r in rows if split_of(r["id"]) == split]


def _doc(p: Passage) -> str:
    return doc_id_of(p.id)


def _holds(text: str, answers: Sequence[str]) -> bool:
    t = normalize(text)
    return any(normalize(a) and normalize(a) in t for a in answers)


def is_training_document(doc_id: str) -> bool:
    """A reading passage by its subject's split, anything else by the KB's split."""
    passage = _reading_by_id().get(doc_id)
    if passage is not None:
        return passage.split == "train"
    return split_of(doc_id) == "train"


@lru_cache(maxsize=1)
def _reading_by_id() -> dict[str, ReadingPassage]:
    return {p.id: p for p in reading_passages()}


async def gather_passages(
    retriever: Any,
    questions: Sequence[str],
    k: int,
    keep: Callable[[str], bool] = is_training_document,
) -> list[list[Passage]]:
    """Top-k passages per question, held-out (dev, test) documents removed."""
    results = await retriever.search_many(list(questions), k=k)
    return [[p for p in ps if keep(_doc(p))] for ps in results]


def training_questions() -> tuple[list[KBQuestion], list[KBQuestion]]:
    """The questions whose passages ``splice train data`` gathers: the KB's training
    split, and the reading corpus's (each searches its own index)."""
    reading = [
        *reading_questions("train", "answerable"),
        *reading_questions("train", "unanswerable"),
    ]
    return kb_questions(split="train"), reading


def cached_chat_replies(
    cache: Path, model: Path, generate: Callable[[], dict[str, list[int]]]
) -> tuple[dict[str, list[int]], bool]:
    """The base model's greedy chat replies, reused from ``cache`` when it was written
    for the same model, else made by ``generate`` and stored. Returns (replies, reused)."""
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if cached.get("model") == str(model):
        return cached["replies"], True
    replies = generate()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"model": str(model), "replies": replies}))
    return replies, False


async def generate_chat_replies(
    engine: Any, prompts: Sequence[dict[str, str]], *, max_tokens: int = 192
) -> dict[str, list[int]]:
    """The base model's own replies (greedy, closed-book), so training keeps its voice.
    Replies that ran out of tokens or contain a protocol tag are dropped."""
    from agent.loop import Budgets
    from agent.sdk import Agent
    from agent.trace import GenerationStep

    agent = Agent(engine, [], use_tools=False, budgets=Budgets(max_segment_tokens=max_tokens))
    answers = await agent.aask_many([p["prompt"] for p in prompts])
    special = set(agent.protocol.ids.values()) if hasattr(agent.protocol, "ids") else set()
    out: dict[str, list[int]] = {}
    for p, a in zip(prompts, answers):
        gen = [s for s in a.trace if isinstance(s, GenerationStep)]
        if gen and gen[-1].finish_reason == "stop" and not special & set(a.token_ids):
            out[p["id"]] = list(a.token_ids)
    return out


def _train_only(qs: Sequence[KBQuestion]) -> list[KBQuestion]:
    """Training-split questions, minus any whose wording a held-out question shares (two
    articles on one subject can ask the same thing)."""
    heldout = {normalize(q.question) for q in kb_questions(split="heldout")}
    return [
        q
        for q in qs
        if q.split == "train"
        and split_of(q.source_id) == "train"
        and normalize(q.question) not in heldout
    ]


def build_examples(
    replayer: Replayer,
    *,
    probe: dict[str, dict[str, Any]],
    passages: dict[str, list[Passage]],
    chat_replies: dict[str, list[int]],
    cfg: DataConfig,
    user_qa: Sequence[KBQuestion] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> list[Example]:
    """All kinds of trajectory, deduplicated. ``passages`` maps a question id to its
    retrieved passages (held-out documents already removed).

    ``user_qa`` (from :func:`read_user_qa`) replaces the built-in knowledge base and
    reading corpus: their kinds are made from the user's questions over the user's
    corpus instead, and the closed-book kinds from the user's questions too. Chat and
    identity examples stay."""
    rng = random.Random(cfg.seed)
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()

    def add(
        kind: str,
        source_id: str,
        question: str,
        segments: list[list[int]],
        *,
        tools: bool,
        psg: Sequence[Passage] = (),
    ) -> None:
        ids, mask = replayer.replay(question, segments, tools=tools, passages=psg)
        n = per_kind[kind]
        per_kind[kind] += 1
        examples.append(
            Example(
                id=f"{kind}/{source_id}/{n}",
                kind=kind,
                source_id=source_id,  # type: ignore[arg-type]
                tools=tools,
                input_ids=ids,
                loss_mask=mask,
            )
        )

    if user_qa is None:
        answerable = _train_only(kb_questions(split="train", answerable=True))
        unanswerable = _train_only(kb_questions(split="train", answerable=False))
    else:
        answerable = _with_gold_source(
            [q for q in user_qa if q.answerable], passages, replayer.visible_block
        )
        unanswerable = [q for q in user_qa if not q.answerable]

    # tools on, gold passage retrieved: search, read, answer
    pool = answerable[:]
    rng.shuffle(pool)
    mix = _Mix(add, replayer, passages, rng, skipped)
    mix.answers("tools-answer", pool, cfg.tools_answer, _others)

    # tools on, answer absent: entities nobody wrote about, or the source removed
    for q in rng.sample(unanswerable, min(cfg.tools_absent_unanswerable, len(unanswerable))):
        psg = arrange_passages(None, passages.get(q.id, []), rng)
        mix.search_then("tools-absent", q, replayer.abstain(), psg)
    mix.removed("tools-absent", pool[::-1], cfg.tools_absent_removed, _others)

    if user_qa is None:
        _add_reading(mix, cfg)

    # closed-book: known → answer, unknown → "I don't know" (labels from the probe)
    golds = {q.id: (q.question, q.answers) for q in answerable}
    if user_qa is None:
        golds.update({t["id"]: (t["question"], t["answers"]) for t in _trivia("train")})
    known = [i for i, r in probe.items() if r["label"] == "known" and i in golds]
    unknown = [i for i, r in probe.items() if r["label"] == "unknown" and i in golds]
    for i in sorted(known)[: cfg.max_known]:
        question, answers = golds[i]
        for wording in known_wordings(question)[: cfg.known_variants]:
            add("closed-known", i, wording, [replayer.answer(answers[0])], tools=False)
    fictional_out = [q.id for q in unanswerable]
    golds.update({q.id: (q.question, q.answers) for q in unanswerable})
    candidates = sorted(unknown) + fictional_out
    for i in rng.sample(candidates, min(cfg.closed_unknown, len(candidates))):
        add("closed-unknown", i, golds[i][0], [replayer.abstain()], tools=False)
    if not probe:
        skipped["closed-book: no probe labels given"] += 1

    # ordinary chat in both contexts, with the base model's own replies
    for p in chat_prompts("train"):
        reply = chat_replies.get(p["id"])
        if reply is None:
            skipped["chat: no usable reply"] += 1
            continue
        for tools in (True, False):
            add("chat", p["id"], p["prompt"], [reply], tools=tools)
    for n, prompt in enumerate(IDENTITY_PROMPTS):
        for tools in (True, False):
            reply = replayer.reply(IDENTITY_REPLIES[rng.randrange(len(IDENTITY_REPLIES))])
            add("identity", f"identity-{n}", prompt, [reply], tools=tools)

    for why, n in sorted(skipped.items()):
        log(f"skipped {n}: {why}")
    return dedupe(examples)


def read_user_qa(path: Path) -> list[KBQuestion]:
    """A user's questions: JSONL rows ``{"question", "answers", "answerable"?, "id"?,
    "source_id"?}``. ``answerable`` defaults to true; ``answers`` (a list or one
    string) is needed when it is true; ``source_id`` names the corpus document that
    holds the answer (without it, the first retrieved passage that contains an answer
    is taken as the source). A bad row is a one-line DatasetError."""
    if not path.is_file():
        raise DatasetError(str(path), "no such file")
    out: list[KBQuestion] = []
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict) or not str(row.get("question", "")).strip():
            raise DatasetError(where, 'expected a JSON object with a "question"')
        answerable = row.get("answerable", True)
        if not isinstance(answerable, bool):
            raise DatasetError(where, '"answerable" must be true or false')
        answers = row.get("answers", [])
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DatasetError(where, '"answers" must be a string or a list of strings')
        if answerable and not any(a.strip() for a in answers):
            raise DatasetError(where, 'an answerable question needs "answers"')
        out.append(
            KBQuestion(
                id=str(row.get("id") or f"qa-{lineno}"),
                question=str(row["question"]).strip(),
                answers=answers,
                answerable=answerable,
                source_id=str(row.get("source_id") or ""),
                split="train",
                fictional=False,
                category="user",
            )
        )
    if not out:
        raise DatasetError(str(path), "no questions")
    dup = next((i for i, n in Counter(q.id for q in out).items() if n > 1), None)
    if dup is not None:
        raise DatasetError(str(path), f"the id {dup!r} is used twice")
    return out


def _with_gold_source(
    qs: Sequence[KBQuestion],
    passages: dict[str, list[Passage]],
    visible: Callable[[Passage], str],
) -> list[KBQuestion]:
    """Questions without a ``source_id`` take the first retrieved passage that holds
    an answer (as the model would see it) as their source."""
    out = []
    for q in qs:
        if not q.source_id:
            gold = next((p for p in passages.get(q.id, []) if _holds(visible(p), q.answers)), None)
            if gold is not None:
                q = q.model_copy(update={"source_id": _doc(gold)})
        out.append(q)
    return out


def _others(q: KBQuestion, got: Sequence[Passage]) -> list[Passage]:
    return [p for p in got if _doc(p) != q.source_id]


class _Mix:
    """What the kinds of search trajectory share: find the gold passage, pick the
    distractors, search with a varied query, then answer or abstain."""

    def __init__(
        self,
        add: Callable[..., None],
        replayer: Replayer,
        passages: dict[str, list[Passage]],
        rng: random.Random,
        skipped: Counter[str],
    ) -> None:
        self.add, self.replayer, self.passages = add, replayer, passages
        self.rng, self.skipped = rng, skipped

    def answers(
        self,
        kind: str,
        pool: Sequence[KBQuestion],
        n: int,
        distractors: Callable[[KBQuestion, Sequence[Passage]], list[Passage]],
    ) -> None:
        """Search, the gold passage among 1-3, answer: ``n`` of ``pool``."""
        used = 0
        for q in pool:
            if used >= n:
                break
            got = self.passages.get(q.id, [])
            visible = self.replayer.visible_block
            gold = next(
                (p for p in got if _doc(p) == q.source_id and _holds(visible(p), q.answers)),
                None,
            )
            if gold is None:
                self.skipped[f"{kind}: gold passage not retrieved or cut"] += 1
                continue
            psg = arrange_passages(gold, distractors(q, got), self.rng)
            self.search_then(kind, q, self.replayer.answer(q.answers[0]), psg)
            used += 1

    def removed(
        self,
        kind: str,
        pool: Sequence[KBQuestion],
        n: int,
        distractors: Callable[[KBQuestion, Sequence[Passage]], list[Passage]],
    ) -> None:
        """Search, the gold passage gone and no other holding the answer, abstain."""
        done = 0
        for q in pool:
            if done >= n:
                break
            rest = distractors(q, self.passages.get(q.id, []))
            if not rest or any(_holds(p.text, q.answers) for p in rest):
                self.skipped[f"{kind}: another passage holds the answer"] += 1
                continue
            query = self.rng.choice(query_variants(q.question))
            psg = arrange_passages(None, rest, self.rng)
            self.add(
                kind,
                q.id,
                q.question,
                [self.replayer.search(query), self.replayer.abstain()],
                tools=True,
                psg=psg,
            )
            done += 1

    def search_then(
        self, kind: str, q: KBQuestion, final: list[int], psg: Sequence[Passage]
    ) -> None:
        query = self.rng.choice(query_variants(q.question))
        self.add(kind, q.id, q.question, [self.replayer.search(query), final], tools=True, psg=psg)


def _add_reading(mix: _Mix, cfg: DataConfig) -> None:
    """The reading corpus's kinds: read a dense real paragraph and answer with its span,
    or abstain when the paragraph (or its neighbours) does not say."""
    by_id = _reading_by_id()

    def subject(doc: str) -> str | None:
        p = by_id.get(doc)
        return p.subject if p is not None else None

    def distractors(q: KBQuestion, got: Sequence[Passage]) -> list[Passage]:
        # The hard case first: a neighbour paragraph on the same subject.
        others = _others(q, got)
        same = [p for p in others if subject(_doc(p)) == subject(q.source_id)]
        return same + [p for p in others if p not in same]

    answerable = reading_questions("train", "answerable")
    mix.rng.shuffle(answerable)
    mix.answers("reading-answer", answerable, cfg.reading_answer, distractors)
    unanswerable = reading_questions("train", "unanswerable")
    for q in mix.rng.sample(unanswerable, min(cfg.reading_absent, len(unanswerable))):
        got = mix.passages.get(q.id, [])
        own = [p for p in got if _doc(p) == q.source_id][:1]
        psg = arrange_passages(own[0] if own else None, distractors(q, got), mix.rng)
        mix.search_then("reading-absent", q, mix.replayer.abstain(), psg)
    mix.removed("reading-removed", answerable[::-1], cfg.reading_removed, distractors)


def known_wordings(question: str) -> list[str]:
    """The question as asked, lowercased without the question mark, and prefixed."""
    q = " ".join(question.split())
    return [q, q.rstrip("?").strip().lower(), f"Quick question: {q}"]


def dedupe(examples: Sequence[Example]) -> list[Example]:
    seen: set[str] = set()
    out = []
    for e in examples:
        key = hashlib.sha256(json.dumps([e.input_ids, e.loss_mask]).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def write_dataset(
    out_dir: Path, examples: Sequence[Example], tokenizer: Any, meta: dict[str, Any]
) -> Path:
    """``train.jsonl`` (written to a temp file, then renamed) and the data card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "train.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for e in examples:
            row = e.model_dump()
            row["text"] = tokenizer.decode(e.input_ids)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    (out_dir / "README.md").write_text(data_card(examples, meta))
    return path


def read_dataset(path: Path) -> list[Example]:
    return [Example.model_validate(row) for row in read_rows(path, ("input_ids", "loss_mask"))]


def data_card(examples: Sequence[Example], meta: dict[str, Any]) -> str:
    rows = []
    for kind in KINDS:
        sel = [e for e in examples if e.kind == kind]
        if not sel:
            continue
        toks = sum(len(e.input_ids) for e in sel)
        tgt = sum(e.target_tokens for e in sel)
        tools = sum(e.tools for e in sel)
        rows.append(
            f"| {kind} | {len(sel)} | {tools} | {toks / len(sel):.0f} | {tgt / len(sel):.1f} |"
        )
    total = sum(len(e.input_ids) for e in examples)
    lines = [
        "# Splice training data (self-interrogation)",
        "",
        "Built by `splice train data` from the knowledge base's training split, the "
        "knowledge probe's labels, and the trivia/chat prompts under `evals/data` "
        "(training split only). Held-out items never enter.",
        "",
        "| kind | examples | tools on | mean ids | mean target ids |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Total: {len(examples)} examples, {total:,} ids; loss on "
        f"{sum(e.target_tokens for e in examples):,} sampled ids only (prompt and "
        "`<information>` contents masked).",
        "",
        "Kinds: `tools-answer` = search, the gold passage among 1–3 passages at a random "
        "position, answer; `tools-absent` = search, passages without the answer (fictional "
        'entities absent from the corpus, or the source article removed), "I don\'t know"; '
        "`reading-answer` / `reading-absent` / `reading-removed` = the same over the "
        "reading corpus's dense real-world paragraphs (gold span; adversarial question "
        "beside its own paragraph; source paragraph removed); "
        '`closed-known` / `closed-unknown` = no tools, answer or "I don\'t know" by the '
        "probe's label; `chat` = ordinary prompts with the base model's own replies, with "
        "and without tools; `identity` = who the assistant is, from its system prompt. "
        "Search queries vary: the question, lowercased without '?', or keywords.",
        "",
        "```json",
        json.dumps(meta, indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def run_gather(
    index_path: Path,
    questions: Sequence[KBQuestion],
    k: int,
    keep: Callable[[str], bool] = is_training_document,
) -> dict[str, list[Passage]]:
    """``keep``: which documents may be shown (the built-in corpora's training splits;
    a user's corpus is all training)."""
    from retrieval import IndexRetriever

    retriever = IndexRetriever.open(index_path)
    got = asyncio.run(gather_passages(retriever, [q.question for q in questions], k, keep))
    return {q.id: ps for q, ps in zip(questions, got)}
