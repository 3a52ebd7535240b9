#!/usr/bin/env python3
"""Dev tool: builds tests/fixtures/spm/ (a tiny Llama-2 style SentencePiece model and reference ids).

Needs `pip install sentencepiece` (PyPI); the tests themselves need no Python. The model is trained
on a deterministic corpus (the fixture Python file plus generated English / Chinese lines), BPE with
byte fallback like Llama-2, so encoding exercises merges, unknown characters as <0x..> bytes, and
the dummy-prefix space. Expected ids and decoded text come from the Python sentencepiece library,
an implementation independent of r1's C++ code path.

Usage: python3 scripts/make_spm_fixture.py  (from the repository root)
"""
import json
import os
import random

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "spm")


def corpus():
    rng = random.Random(11)
    words = "the model reasons about a problem step by step and then answers with care".split()
    zh = ["深度", "求索", "推理", "模型", "蒸馏", "的", "开源", "时代", "我们", "思考"]
    with open(os.path.join(ROOT, "tests", "fixtures", "heldout.py.txt"), encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines() if l.strip()][:3000]
    for _ in range(2000):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))))
        lines.append("".join(rng.choice(zh) for _ in range(rng.randint(2, 8))))
    return lines


CASES = [
    "Hello world",
    "the model reasons step by step",
    "  leading and trailing  ",
    "def f(x):\n    return x + 1\n",
    "深度求索的推理模型",
    "unseen characters: ß ø 🦙 ∑",
    "numbers 12345 and 3.14",
    "<s>inside</s> text",
    "",
    "a",
]


def main():
    os.makedirs(OUT, exist_ok=True)
    prefix = os.path.join(OUT, "tiny")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=prefix, vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=0.9995, split_digits=True, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", num_threads=1,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    os.remove(prefix + ".vocab")
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    with open(os.path.join(OUT, "cases.jsonl"), "w", encoding="utf-8") as f:
        for text in CASES:
            # Like HF's slow LlamaTokenizer, "<s>" / "</s>" in the text are the control tokens: the
            # pieces between them are encoded one by one.
            ids, rest = [], text
            while True:
                cut = min([(rest.find(t), t) for t in ("<s>", "</s>") if rest.find(t) >= 0], default=None)
                if cut is None:
                    ids += sp.encode(rest) if rest else []
                    break
                if cut[0] > 0:
                    ids += sp.encode(rest[:cut[0]])
                ids.append(sp.piece_to_id(cut[1]))
                rest = rest[cut[0] + len(cut[1]):]
            plain = [i for i in ids if not sp.is_control(i)]
            f.write(json.dumps({"text": text, "ids": ids, "decoded": sp.decode(plain)}, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "chat_template": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"}, f, indent=1)
    print("wrote", OUT, os.path.getsize(prefix + ".model"), "bytes")


if __name__ == "__main__":
    main()
