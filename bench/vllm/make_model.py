"""Build a tiny random-weight Llama model and its tokenizer for vLLM, offline.

Run with the vLLM venv (it has ``torch``, ``transformers`` and ``tokenizers``)::

    bench/vllm/.venv-vllm/bin/python bench/vllm/make_model.py [--out bench/vllm/model]

The model is a 2-layer Llama with hidden size 128 and 2 heads of 64 (vLLM's CPU attention
kernel refuses a head size of 16), its weights drawn from a fixed seed. The tokenizer is a
byte-level BPE of about 440 tokens trained on a little generated text, with a chat template, so
vLLM can serve ``/v1/completions`` and ``/v1/chat/completions`` from the folder alone: no model
hub, no network. The text it generates is noise, but every token is a real decode step of the
engine, which is all a load test needs. Its byte-level vocabulary includes lone bytes of
multi-byte UTF-8 characters, so vLLM's detokenizer often holds text back (``"content": ""``
deltas): the case the end-to-end run (``e2e.py``) measures.

Deterministic: the same seed writes the same files.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

VOCAB_SIZE = 440
"""Tokens of the BPE tokenizer, special tokens included."""

SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}"
    "{% endif %}"
    "<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""``<|role|>text<|end|>`` per message, then ``<|assistant|>``: tools and tool results add
nothing to the prompt (a named ``tool_choice`` still makes vLLM answer with a tool call)."""

WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "by",
    "at",
    "be",
    "this",
    "from",
    "or",
    "an",
    "are",
    "not",
    "have",
    "model",
    "token",
    "server",
    "client",
    "request",
    "stream",
    "latency",
    "throughput",
    "batch",
    "cache",
    "prefill",
    "decode",
    "queue",
    "worker",
    "load",
    "test",
    "answer",
    "prompt",
    "chat",
    "completion",
    "engine",
    "kernel",
    "memory",
    "core",
    "thread",
    "café",
    "naïve",
    "façade",
    "über",
    "déjà",
    "smörgåsbord",
    "crème",
    "brûlée",
    "résumé",
    "jalapeño",
    "αβγ",
    "δέλτα",
    "ωμέγα",
    "привет",
    "мир",
    "東京",
    "大阪",
    "日本語",
    "한국어",
    "😀",
    "🚀",
    "✓",
    "→",
    "∑",
    "∞",
    "42",
    "7",
    "1024",
    "3.14",
]
"""Mostly ASCII, with some multi-byte characters so the merges learn a few of them."""


def training_text(seed: int, lines: int = 2000) -> list[str]:
    """Sentences of random words: what the BPE merges are learnt from."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 16))]
        out.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ","]))
    return out


def build_tokenizer(seed: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE of :data:`VOCAB_SIZE` tokens with the chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|eos|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def build_model(vocab_size: int, bos_id: int, eos_id: int, seed: int) -> LlamaForCausalLM:
    """A 2-layer Llama, hidden 128, 2 heads of 64, random weights from ``seed``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    return LlamaForCausalLM(config).eval()


def main() -> None:
    """Write the model and tokenizer to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tokenizer = build_tokenizer(args.seed)
    model = build_model(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    model.save_pretrained(args.out, safe_serialization=True)
    model.generation_config.save_pretrained(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps(
            {"out": str(args.out), "vocab": len(tokenizer), "parameters": params}, sort_keys=True
        )
    )


if __name__ == "__main__":
    main()
