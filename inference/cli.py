"""`autoglm generate` and `autoglm chat`: the engine from a terminal (app/cli.py mounts these)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .engine import Completion, Engine
from .reasoning import ReasoningFormat
from .sampling import SamplingParams


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `generate` and `chat` subcommands."""
    gen = subparsers.add_parser("generate", help="complete one prompt, streaming to the terminal")
    gen.add_argument("prompt", help="the prompt text")
    gen.add_argument("--raw", action="store_true", help="send the text as is, without the chat template")
    _common(gen)
    gen.set_defaults(func=_generate_cmd)
    chat = subparsers.add_parser("chat", help="interactive multi-turn chat (empty line or Ctrl-D to quit)")
    chat.add_argument("--system", default=None, help="system prompt")
    _common(chat)
    chat.set_defaults(func=_chat_cmd)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="local checkpoint directory (config.json, safetensors, tokenizer)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--quantization", default=None, choices=["int8"], help="INT8 weight-only")
    p.add_argument("--kv-cache-dtype", default="auto", choices=["auto", "int8"])
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stats", action="store_true", help="print usage and timings after each answer")


def _engine(args: argparse.Namespace) -> Engine:
    return Engine.from_pretrained(
        args.model,
        device=args.device,
        dtype=args.dtype,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
    )


def _params(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


async def _print_stream(engine: Engine, prompt, params: SamplingParams, stats: bool) -> Completion:
    final = None
    async for ev in engine.stream(prompt, params):
        if isinstance(ev, Completion):
            final = ev
        else:
            print(ev.text, end="", flush=True)
    print()
    assert final is not None
    if stats:
        t, u = final.timings, final.usage
        print(
            f"[{u.prompt_tokens} prompt ({u.prefix_hit_tokens} cached) + {u.completion_tokens} tokens, "
            f"ttft {t.ttft_s * 1000:.0f} ms, {t.decode_tokens_per_s:.1f} tok/s, {final.finish_reason}]",
            file=sys.stderr,
        )
    return final


def _generate_cmd(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        prompt = args.prompt if args.raw else [{"role": "user", "content": args.prompt}]
        final = asyncio.run(_print_stream(engine, prompt, _params(args), args.stats))
    return 1 if final.finish_reason == "error" else 0


def _chat_cmd(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        fmt = ReasoningFormat.detect(engine.tokenizer)
        while True:
            try:
                line = input("> ")
            except EOFError:
                break
            if not line.strip():
                break
            messages.append({"role": "user", "content": line})
            final = asyncio.run(_print_stream(engine, messages, _params(args), args.stats))
            # a reasoning checkpoint's thinking does not go back into the prompt (GLM-Z1's template drops it)
            messages.append(
                {"role": "assistant", "content": fmt.answer_of(final.text) if fmt else final.text}
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: python -m inference.cli generate --model DIR "prompt"."""
    parser = argparse.ArgumentParser(prog="autoglm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
