"""The interaction of docs/guides/write-your-own-interaction.md."""

from pydantic import BaseModel

from clientswarm import Context, Interaction


class Journey(Interaction):
    """Check the service, then ask one question."""

    class Params(BaseModel):
        question: str = "What is HPC?"
        max_tokens: int = 16

    async def run(self, ctx: Context) -> None:
        async with ctx.measure("retrieve"):
            await ctx.http.get("/health")
        answer = await ctx.chat(
            [{"role": "user", "content": self.params.question}],
            max_tokens=self.params.max_tokens,
        )
        ctx.state["last_answer"] = answer.text
