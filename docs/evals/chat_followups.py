"""Does a chat follow-up still search? The last answer kept as text only (before) vs
as the model's own tokens, searches included (after). Run from the repository root:
`.venv/bin/python docs/evals/chat_followups.py` (prepared default model and knowledge base)."""

import asyncio
import json

from splice.defaults import default_agent

FIRST = [
    "Who wrote Hamlet?",
    "What is my neighbour's cat called?",
    "Who won the 1958 World Cup?",
    "What is the capital of France?",
    "Tell me a joke.",
    "Who painted the Mona Lisa?",
    "When did the Berlin Wall fall?",
    "What is the boiling point of water?",
]
SECOND = [
    "What is the capital of Australia?",
    "Who discovered penicillin?",
    "How tall is Mount Everest?",
    "Who wrote Don Quixote?",
]


async def pair(agent, f, s, mode):
    chat = agent.chat()
    a1 = await chat.aask(f)
    if mode == "text":
        chat.history[-1].ids = None
    a2 = await chat.aask(s)
    return a1, a2


async def main(agent):
    for mode in ("text", "ids"):
        got = await asyncio.gather(*(pair(agent, f, s, mode) for f in FIRST for s in SECOND))
        print(
            json.dumps(
                {
                    "mode": mode,
                    "followups_searched": sum(a2.searches > 0 for _, a2 in got),
                    "after_abstaining": sum(a2.searches > 0 for a1, a2 in got if a1.abstained),
                    "first_abstained": sum(a1.abstained for a1, _ in got),
                    "first_searched": sum(a1.searches > 0 for a1, _ in got),
                    "of": len(got),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    with default_agent() as agent:
        asyncio.run(main(agent))
