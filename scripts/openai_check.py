#!/usr/bin/env python3
"""The official `openai` Python client against a running r1 serve, unchanged: a chat completion
streamed and not, the reasoning from `reasoning_content`, the usage. A dev check (needs
`pip install openai`), not a CI test.

  r1 serve -m model.r1m --port 8080 &
  python3 scripts/openai_check.py --port 8080
"""
import argparse
import sys

from openai import OpenAI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--api-key", default="unused")
    ap.add_argument("--prompt", default="What is 17*23?")
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    import openai
    print("openai", openai.__version__)
    client = OpenAI(base_url="http://127.0.0.1:%d/v1" % args.port, api_key=args.api_key)
    model = client.models.list().data[0].id
    msgs = [{"role": "user", "content": args.prompt}]

    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=args.max_tokens, temperature=0,
                                       extra_body={"think_budget": 16})
    m = r.choices[0].message
    print("non-streamed: finish=%s usage=%s" % (r.choices[0].finish_reason, r.usage.model_dump()))
    print("  reasoning_content=%r" % getattr(m, "reasoning_content", None))
    print("  content=%r" % m.content)

    reasoning, content, finish, usage = "", "", None, None
    stream = client.chat.completions.create(model=model, messages=msgs, max_tokens=args.max_tokens, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"think_budget": 16})
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            reasoning += getattr(ch.delta, "reasoning_content", None) or ""
            content += ch.delta.content or ""
            finish = ch.finish_reason or finish
    print("streamed: finish=%s usage=%s" % (finish, usage.model_dump() if usage else None))
    same = reasoning == (getattr(m, "reasoning_content", None) or "") and content == m.content
    print("  streamed text equals the non-streamed response:", same)

    try:
        client.chat.completions.create(model=model, messages=msgs, temperature="hot")
    except openai.BadRequestError as e:
        print("bad request ->", e.status_code, e.body)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
