"""`generate` and `chat` subcommands, run in-process on a tiny checkpoint."""

import argparse
import io

from inference.cli import register


def run(argv):
    parser = argparse.ArgumentParser(prog="autoglm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_generate_streams_to_stdout(checkpoints, capsys):
    rc = run(["generate", "--model", str(checkpoints["glm"]), "--max-tokens", "8", "--stats", "你好"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.endswith("\n")
    assert "prompt (0 cached) + " in err and "tok/s" in err


def test_chat_is_multi_turn_and_reuses_the_prefix(checkpoints, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("差旅政策是什么？\nAnd the revenue?\n\n"))
    rc = run(
        ["chat", "--model", str(checkpoints["glm"]), "--max-tokens", "20", "--stats", "--system", "Be brief."]
    )
    _, err = capsys.readouterr()
    assert rc == 0
    lines = [line for line in err.splitlines() if "prompt (" in line]
    assert len(lines) == 2
    # the second turn's prompt starts with the whole first exchange: its full blocks come from the cache
    cached = int(lines[1].split("prompt (")[1].split(" cached")[0])
    assert cached >= 16
