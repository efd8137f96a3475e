"""A tool-calling agent loop: ask, run the tools the model calls, ask again, until it answers.

Each run is one journey sample named "Agent"; every model call is a step "think" (TTFT, ITL,
tokens) and every tool run a step "tool".
"""

import json

from pydantic import BaseModel

from clientswarm import Context, Interaction

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


class Agent(Interaction):
    class Params(BaseModel):
        task: str = "Should I take an umbrella in Paris today?"
        max_turns: int = 4
        max_tokens: int = 32

    async def run(self, ctx: Context) -> None:
        messages = [{"role": "user", "content": self.params.task}]
        for _ in range(self.params.max_turns):
            reply = await ctx.chat(
                messages, tools=TOOLS, max_tokens=self.params.max_tokens, name="think"
            )
            messages.append(reply.message)
            if not reply.tool_calls:
                return  # the model answered
            for call in reply.tool_calls:
                async with ctx.measure("tool"):
                    arguments = json.loads(call["function"]["arguments"] or "{}")
                    await ctx.http.get("/health")  # stands for the weather service
                    result = {"city": arguments.get("city", "?"), "rain": ctx.rng.random() < 0.3}
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}
                )
        raise RuntimeError(f"no answer after {self.params.max_turns} turns")
