"""A RAG-like journey: embed the question, retrieve passages, answer with them in the prompt.

Each run is one journey sample named "Rag"; its steps "embed", "retrieve" and "answer" get
their own statistics (the LLM steps with TTFT, ITL and tokens).
"""

import math

from pydantic import BaseModel

from clientswarm import Context, Interaction

PASSAGES = [
    "Slurm schedules batch jobs on HPC clusters.",
    "Kubernetes runs containers as pods on nodes.",
    "vLLM serves large language models with paged attention.",
    "Prometheus scrapes metrics over HTTP.",
]


class Rag(Interaction):
    class Params(BaseModel):
        questions: list[str] = ["What is HPC?", "How are LLMs served?"]
        top_k: int = 2
        max_tokens: int = 32

    async def on_start(self, ctx: Context) -> None:
        # Each client embeds the passages once; runs reuse them (self is per client).
        found = await ctx.embedding(PASSAGES, name="index")
        self.index = list(zip(PASSAGES, found.vectors))

    async def run(self, ctx: Context) -> None:
        question = ctx.rng.choice(self.params.questions)
        query = (await ctx.embedding(question, name="embed")).vectors[0]
        async with ctx.measure("retrieve"):
            await ctx.http.get("/health")  # stands for a call to the vector store
            ranked = sorted(self.index, key=lambda item: -cosine(query, item[1]))
            context = "\n".join(text for text, _ in ranked[: self.params.top_k])
        prompt = f"Answer from the context.\nContext:\n{context}\nQuestion: {question}"
        await ctx.chat(
            [{"role": "user", "content": prompt}], max_tokens=self.params.max_tokens, name="answer"
        )


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0
