#!/usr/bin/env python3
"""The independent reference of harman's CPU backend: a tiny GPT-2 built by Hugging Face
`transformers` (GPT2LMHeadModel, PyTorch, fp32, no dropout), its weights saved with
save_pretrained, one fixed batch, and the loss and every parameter's gradient computed by
PyTorch autograd. Run once; the output is committed in tests/data/train/ and the test
`train_matches_the_pytorch_reference` compares harman's loss and gradients with it (1e-5).

  python scripts/make_train_reference.py tests/data/train        # write the reference
  python scripts/make_train_reference.py --check-export DIR      # load a `harman export-hf` folder

Needs torch, transformers, safetensors (pip).
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

torch.use_deterministic_algorithms(True)


def reference(out: Path) -> None:
    torch.manual_seed(20240520)
    cfg = GPT2Config(vocab_size=96, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg).float()
    # Larger than the 0.02 initialization, so every path carries gradient.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.train()  # pdrop = 0: no dropout either way
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model", safe_serialization=True)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16 + 1), generator=g)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    logits = model(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
    loss.backward()
    grads = {f"grad.{n}": p.grad.detach().contiguous() for n, p in model.named_parameters()}
    grads["inputs"] = x.to(torch.int64)
    grads["targets"] = y.to(torch.int64)
    grads["logits"] = logits.detach().contiguous()
    save_file(grads, out / "reference.safetensors",
              metadata={"loss": repr(loss.item()), "torch": torch.__version__})
    print(f"loss {loss.item():.8f}; wrote {out}")


def check_export(folder: Path) -> None:
    """Loads a harman export with transformers and prints its loss on the reference batch."""
    model = GPT2LMHeadModel.from_pretrained(folder).float().eval()
    ids = json.loads((folder / "check_batch.json").read_text())
    x, y = torch.tensor(ids["inputs"]), torch.tensor(ids["targets"])
    with torch.no_grad():
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    print(json.dumps({"loss": loss.item(), "vocab": model.config.vocab_size, "layers": model.config.n_layer}))


if __name__ == "__main__":
    if sys.argv[1] == "--check-export":
        check_export(Path(sys.argv[2]))
    else:
        reference(Path(sys.argv[1]))
