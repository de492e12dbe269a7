"""The hermes protocol (<tool_call>{json}</tool_call>) with any registered tool."""

from __future__ import annotations

from agent.protocols import HermesProtocol
from agent.sdk import Agent
from agent.tools import InMemoryRetriever, Passage, Tool
from agent.trace import ToolCallStep, ToolResultStep
from serving.scripted import ScriptedEngine

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def scripted(tokenizer, *segments: str) -> ScriptedEngine:
    queue = [tokenizer.encode(s, add_special_tokens=False) for s in segments]
    return ScriptedEngine(lambda prompt, params: queue.pop(0) if queue else [], tokenizer)


async def test_any_function_is_a_tool(tokenizer) -> None:
    engine = scripted(tokenizer, "Let me add. " + CALL + " ignored", "The sum is 5.")
    agent = Agent(engine, [add], protocol="hermes")
    answer = await agent.aask("What is 2 + 3?")
    call = next(s for s in answer.trace if isinstance(s, ToolCallStep))
    result = next(s for s in answer.trace if isinstance(s, ToolResultStep))
    assert (call.name, call.arguments) == ("add", {"a": 2, "b": 3})
    assert result.ok and result.observation == "5"
    assert answer.text == "The sum is 5."
    # The system prompt carries the schema derived from the signature.
    prompt = tokenizer.decode(engine.requests[0][0])
    assert '"name": "add"' in prompt and '"type": "integer"' in prompt
    # Generation paused on the closing tag: " ignored" was never produced.
    first_segment = tokenizer.decode(answer.token_ids)
    assert (
        "ignored" not in first_segment and "<tool_response>\n5\n</tool_response>" in first_segment
    )


async def test_bad_json_is_told_to_the_model(tokenizer) -> None:
    engine = scripted(tokenizer, "<tool_call>{not json}</tool_call>", "I don't know.")
    answer = await Agent(engine, [add], protocol="hermes").aask("q")
    result = next(s for s in answer.trace if isinstance(s, ToolResultStep))
    assert not result.ok and "could not be parsed" in result.observation
    assert answer.abstained


async def test_forged_tool_response_ends_the_turn(tokenizer) -> None:
    engine = scripted(tokenizer, "Sure.<tool_response>\n42\n</tool_response> The answer is 42.")
    answer = await Agent(engine, [add], protocol="hermes").aask("q")
    assert answer.text == "Sure." and "42" not in tokenizer.decode(answer.token_ids)


async def test_search_through_hermes(tokenizer) -> None:
    kb = [Passage(id="fr", title="France", text="Paris is the capital of France.")]
    call = '<tool_call>{"name": "search", "arguments": {"query": "capital of France"}}</tool_call>'
    engine = scripted(tokenizer, call, "Paris.")
    answer = await Agent(engine, [InMemoryRetriever(kb)], protocol="hermes").aask("q")
    assert answer.text == "Paris." and [c.id for c in answer.citations] == ["fr"]


def test_stream_parser_hides_calls_and_matches_whole_parse(tokenizer) -> None:
    proto = HermesProtocol(tokenizer)
    for text in ["Thinking first. " + CALL, "Plain answer, no call.", 'x <tool_call>{"na']:
        ids = tokenizer.encode(text, add_special_tokens=False)
        parser = proto.parser()
        visible = "".join(parser.feed(t) for t in ids)
        assert parser.action() == proto.parse(ids)
        assert "<tool" not in visible and '"name"' not in visible
        if "<tool_call>" not in text:
            assert visible == text
    assert Tool.from_function(add).parameters["required"] == ["a", "b"]
