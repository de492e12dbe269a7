"""Property-based tests (hypothesis) for the code that reads what others wrote: the
protocol parsers over arbitrary token streams, retrieved text spliced into each
protocol, the URL guard over generated addresses and URLs, and the graders over
arbitrary strings. Part of the fault matrix in docs/reliability.md."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.protocols import HermesProtocol, SearchR1Protocol, SpliceProtocol
from agent.protocols.base import TextStreamParser
from evals.grading import Grade, grade_answer, is_abstention
from evals.judge import UNPARSEABLE, parse_judge_reply
from retrieval.web.guard import BlockedURLError, allowed, check_url, is_public_address

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROTOCOLS = {"splice": SpliceProtocol, "hermes": HermesProtocol, "search-r1": SearchR1Protocol}
# Strings a hostile page or a confused model might hold: every protocol's tags, chat
# markup, and characters that take several byte-level tokens.
HOSTILE = [
    "<search>", "</search>", "<information>", "</information>", "<answer>", "</answer>",
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    "</TOOL_RESPONSE >", "< /information>", "<think>", "</think>", "<|im_end|>",
    "<|im_start|>assistant\n", "I don't know", "{\"name\": \"search\"}", "é", "€", "😀",
    "\u2028", "\n", " ", "<", ">", "&lt;",
]  # fmt: skip


@pytest.fixture(scope="module")
def protocols(tokenizer):
    return {name: cls(tokenizer) for name, cls in PROTOCOLS.items()}


def _id_streams(tokenizer) -> st.SearchStrategy[list[int]]:
    pieces = [tokenizer.encode(s, add_special_tokens=False) for s in HOSTILE]
    specials = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<search>")]
    one = st.one_of(
        st.integers(0, len(tokenizer) - 1).map(lambda i: [i]),
        st.sampled_from(pieces),
        st.sampled_from(specials).map(lambda i: [i]),
        st.sampled_from(pieces).map(lambda p: p[: max(1, len(p) // 2)]),  # half a tag
    )
    return st.lists(one, max_size=30).map(lambda parts: [i for p in parts for i in p])


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_parsers_survive_any_stream_and_never_take_back_text(
    protocols, tokenizer, name: str
) -> None:
    proto = protocols[name]

    @FUZZ
    @given(ids=_id_streams(tokenizer))
    def check(ids: list[int]) -> None:
        parser = proto.parser()
        released = "".join(parser.feed(i) for i in ids)
        action = parser.action()  # never raises
        assert action == proto.parse(ids)  # streaming and one-shot parse agree
        if isinstance(parser, TextStreamParser):
            final = parser.visible(parser._text())
        else:
            final = tokenizer.decode(parser.visible)
        # What a user was shown is never retracted or rewritten.
        assert final.startswith(released), (released, final)
        # A result block the model writes itself is never part of its answer.
        if action.kind == "answer" and name == "hermes":
            assert "<tool_response>" not in (action.answer or "")
        if action.kind == "answer" and name == "search-r1":
            assert "<information>" not in (action.answer or "")

    check()


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_retrieved_text_cannot_close_or_forge_a_result_block(
    protocols, tokenizer, name: str
) -> None:
    proto = protocols[name]
    blocks_text = st.lists(st.sampled_from(HOSTILE) | st.text(max_size=8), max_size=12).map("".join)

    @FUZZ
    @given(blocks=st.lists(blocks_text, min_size=1, max_size=3))
    def check(blocks: list[str]) -> None:
        ids = proto.result_ids(blocks, 400)
        if name == "splice":
            info = [proto.ids["<information>"], proto.ids["</information>"]]
            assert [i for i in ids if i in info] == info  # one block, opened and closed
            return
        text = tokenizer.decode(ids, skip_special_tokens=False)
        close, open_ = (
            ("</tool_response>", "<tool_response>")
            if name == "hermes"
            else ("</information>", "<information>")
        )
        expected = len(blocks) if name == "hermes" else 1
        assert text.count(close) == expected and text.count(open_) == expected, text

    check()


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
CARRIERS = [ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")]


@FUZZ
@given(v4=ipv4)
def test_ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it(v4) -> None:
    public = is_public_address(str(v4))
    n = int(v4)
    forms = [
        f"::ffff:{v4}",  # mapped
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80))),  # 6to4
        str(ipaddress.IPv6Address((0x64FF9B << 96) | n)),  # NAT64
    ]
    for form in forms:
        assert not is_public_address(form) or public, form


@FUZZ
@given(addr=st.one_of(ipv4, st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)))
def test_the_guard_refuses_every_address_that_is_not_global(addr) -> None:
    if is_public_address(str(addr)):
        assert addr.is_global and not addr.is_multicast
        # Reserved only where the form carries an IPv4 address, which was judged.
        assert not addr.is_reserved or any(addr in net for net in CARRIERS), addr


@FUZZ
@given(port=st.integers(1, 65535), other=st.integers(1, 65535))
def test_an_allowed_host_port_opens_that_port_only(port: int, other: int) -> None:
    entries = [f"docs.internal:{port}"]
    assert allowed("docs.internal", port, "http", entries)
    assert allowed("docs.internal", other, "http", entries) == (other == port)
    assert not allowed("other.internal", port, "http", entries)


@FUZZ
@given(
    url=st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda scheme, host, rest: f"{scheme}://{host}{rest}",
            st.sampled_from(["http", "https", "file", "gopher", "HTTP", ""]),
            st.text(max_size=30),
            st.text(max_size=20),
        ),
    )
)
def test_any_url_is_fetched_or_refused_in_one_line(url: str) -> None:
    async def loopback(host, port, *args, **kwargs):  # never a real lookup
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port or 80))]

    async def run() -> None:
        asyncio.get_running_loop().getaddrinfo = loopback  # type: ignore[method-assign]
        await check_url(url)

    with pytest.raises(BlockedURLError) as info:
        asyncio.run(run())
    assert "\n" not in str(info.value)


@FUZZ
@given(answer=st.text(max_size=80), golds=st.lists(st.text(max_size=20), max_size=3))
def test_the_rule_grader_takes_any_string(answer: str, golds: list[str]) -> None:
    grade = grade_answer(answer, golds)
    assert isinstance(grade, Grade)
    if is_abstention(answer):
        assert grade is Grade.NOT_ATTEMPTED
    assert grade_answer(answer, golds, answerable=False) is not Grade.CORRECT


@FUZZ
@given(reply=st.text(max_size=80), word=st.sampled_from(["not", "isn't", "never", "hardly"]))
def test_the_judge_parser_takes_any_string_and_respects_negation(reply: str, word: str) -> None:
    assert parse_judge_reply(reply) in {"CORRECT", "INCORRECT", "NOT_ATTEMPTED", UNPARSEABLE}
    assert parse_judge_reply(f"Verdict: {reply} {word} correct") != "CORRECT"
