#!/usr/bin/env python3
"""Load run for r1 serve (Python standard library only).

N clients each send streaming chat requests back to back for T seconds, against a server
already listening. Every stream must end with a finish_reason and "data: [DONE]"; the usage
chunk (stream_options.include_usage) counts the tokens. Prints one JSON line: requests,
failures, completion tokens, aggregate tok/s, and p50/p99 time to first token.

  scripts/serve_load.py --port 8080 --clients 32 --seconds 60 --max-tokens 64
"""
import argparse
import http.client
import json
import statistics
import threading
import time


def one_request(host, port, body, timeout):
    """Returns (ttft seconds, completion tokens, error or None)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return None, 0, "status %d: %s" % (r.status, r.read()[:200])
        ttft, finish, usage, done, buf = None, None, None, False, b""
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            ev = json.loads(data)
            if ev.get("usage"):
                usage = ev["usage"]
            for ch in ev.get("choices", []):
                d = ch.get("delta", {})
                if ttft is None and (d.get("content") or d.get("reasoning_content")):
                    ttft = time.monotonic() - t0
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
        if not done:
            return ttft, 0, "stream cut before [DONE]"
        if finish is None or usage is None:
            return ttft, 0, "no finish_reason or usage"
        return ttft, usage["completion_tokens"], None
    except Exception as e:  # noqa: BLE001 - a load run reports every failure
        return None, 0, repr(e)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.6)
    args = ap.parse_args()

    lock = threading.Lock()
    ttfts, tokens, errors, count = [], [0], [], [0]
    t_end = time.monotonic() + args.seconds

    def client(i):
        k = 0
        while time.monotonic() < t_end:
            body = json.dumps({
                "messages": [{"role": "user", "content": "Client %d, request %d: explain step by step why %d is odd or even." % (i, k, i * 1000 + k)}],
                "max_tokens": args.max_tokens, "temperature": args.temperature, "seed": i * 100000 + k,
                "stream": True, "stream_options": {"include_usage": True}})
            ttft, n, err = one_request(args.host, args.port, body, timeout=args.seconds + 120)
            with lock:
                count[0] += 1
                tokens[0] += n
                if err:
                    errors.append(err)
                elif ttft is not None:
                    ttfts.append(ttft)
            k += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    ttfts.sort()
    q = lambda p: ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] if ttfts else None  # noqa: E731
    print(json.dumps({
        "clients": args.clients, "seconds": round(wall, 1), "requests": count[0], "failed": len(errors),
        "completion_tokens": tokens[0], "tok_s": round(tokens[0] / wall, 2),
        "ttft_p50_s": q(0.50) and round(q(0.50), 3), "ttft_p99_s": q(0.99) and round(q(0.99), 3),
        "ttft_mean_s": round(statistics.mean(ttfts), 3) if ttfts else None,
        "first_errors": errors[:3]}))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
