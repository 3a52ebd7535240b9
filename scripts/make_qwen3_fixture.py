#!/usr/bin/env python3
"""Write tests/fixtures/models/tiny-qwen3: a random-weight Qwen3 checkpoint (Qwen2's decoder plus
an RMSNorm over each head of q and of k before RoPE, and no q/k/v bias) at tiny-qwen2's sizes, with
the same tokenizer, template and test cases, and its reference outputs from Hugging Face
transformers, in the layout of the other fixtures (see tests/fixtures/README.md):

    pip install torch transformers safetensors   # dev only; the tests never import them
    scripts/make_qwen3_fixture.py

The reference runs in float32 on the BF16-rounded weights, as for the other fixtures.
"""
import json
import os
import shutil
import struct

import torch
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
SRC, DST = os.path.join(ROOT, "tiny-qwen2"), os.path.join(ROOT, "tiny-qwen3")


def main():
    with open(os.path.join(SRC, "config.json")) as f:
        q2 = json.load(f)
    with open(os.path.join(SRC, "reference.json")) as f:
        ref2 = json.load(f)
    cfg = Qwen3Config(
        vocab_size=q2["vocab_size"], hidden_size=q2["hidden_size"], intermediate_size=q2["intermediate_size"],
        num_hidden_layers=q2["num_hidden_layers"], num_attention_heads=q2["num_attention_heads"],
        num_key_value_heads=q2["num_key_value_heads"], head_dim=q2["hidden_size"] // q2["num_attention_heads"],
        max_position_embeddings=q2["max_position_embeddings"], rms_norm_eps=q2["rms_norm_eps"],
        rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"}, attention_bias=False,
        tie_word_embeddings=False, bos_token_id=q2["bos_token_id"], eos_token_id=q2["eos_token_id"],
        initializer_range=q2.get("initializer_range", 0.08), dtype="bfloat16")
    torch.manual_seed(3)
    cfg.architectures = ["Qwen3ForCausalLM"]
    model = Qwen3ForCausalLM(cfg)
    with torch.no_grad():  # random norm weights (q_norm and k_norm too), so that every parameter matters
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.5 * torch.randn_like(p))
    model = model.to(torch.bfloat16).float().eval()  # the reference: f32 on BF16-rounded weights

    os.makedirs(DST, exist_ok=True)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(DST, "model.safetensors"), metadata={"format": "pt"})
    cfg.save_pretrained(DST)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(SRC, f), os.path.join(DST, f))

    # The reference runs on the checkpoint as saved, read back in float32: the model in memory
    # went through .to(bfloat16), which also rounds its RoPE frequency buffer to 8 bits and
    # moves the logits by up to 4e-3 of their range; a checkpoint loaded from disk does not.
    model = Qwen3ForCausalLM.from_pretrained(DST, dtype=torch.float32).eval()
    cases = []
    with torch.no_grad():
        for k, c in enumerate(ref2["cases"]):
            ids = c["prompt_ids"]
            logits = model(torch.tensor([ids])).logits[0]  # [n, vocab]
            rows = logits[-16:]
            with open(os.path.join(DST, f"logits-{k}.f32"), "wb") as f:
                f.write(struct.pack(f"<{rows.numel()}f", *rows.flatten().tolist()))
            seq, greedy = list(ids), []
            for _ in range(len(c["greedy_continuation_ids"])):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                greedy.append(nxt)
                seq.append(nxt)
            cases.append({"messages": c["messages"], "rendered": c["rendered"], "prompt_ids": ids,
                          "logits_file": f"logits-{k}.f32", "logits_rows": "last 16 prompt positions",
                          "logits_shape": list(rows.shape), "argmax_every_position": logits.argmax(-1).tolist(),
                          "greedy_continuation_ids": greedy})
    with open(os.path.join(DST, "reference.json"), "w") as f:
        json.dump({"model": "tiny-qwen3", "arch": "qwen3", "dtype_of_reference": ref2["dtype_of_reference"],
                   "cases": cases}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
