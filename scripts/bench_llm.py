"""Speed of the LLM paths against bare PyTorch/peft loops on the same model, prompts and batch.

    python scripts/bench_llm.py                       # CPU: the embedded SmolLM2, small sizes
    python scripts/bench_llm.py --batch-size 32 --train-steps 20 --score-prompts 512   # on a GPU

Prints, and writes as JSON (--out):
  * scoring: our `score_yes` (tokenise, sort, left-pad, P(Yes)) vs a bare forward pass with logits_to_keep=1
    on the same padded batches: samples/s and the ratio (target on GPU: ours within 1.5x of bare);
  * training: our engine (accelerate, bf16 autocast on GPU, fp32 on CPU) vs a bare peft loop
    (the loop of shared/reference/gpu_anchor.py): tokens/s and the ratio (target on GPU: >= 90%).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from explainrec_core.config import LoraConfig, ModelConfig, TrainConfig
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.models.adapters import attach_lora
from explainrec_core.models.base_model import answer_token_ids, load_causal_lm, load_tokenizer, resolve_base
from explainrec_core.prompts import REC_INSTRUCTION, RESPONSE_MARKER, alpaca_prompt, rec_input, rec_response
from explainrec_core.training.engine import train
from explainrec_core.training.examples import encode


def prompts(n: int) -> list[str]:
    """TALLRec prompts with 10 history items (about 250 SmolLM2 tokens), varied so lengths differ a little."""
    out = []
    for i in range(n):
        history = [f'"Movie {i * 13 + k} ({1970 + (i + k) % 30})"' for k in range(10)]
        out.append(alpaca_prompt(REC_INSTRUCTION, rec_input(history[: 4 + i % 4], history[4 + i % 4:],
                                                            f'"Target {i} (1995)"')))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_scoring(model, tokenizer, texts, answer_ids, batch_size, device) -> dict:
    score_yes(model, tokenizer, texts[:batch_size], answer_ids, batch_size)  # warm-up
    sync(device)
    start = time.perf_counter()
    score_yes(model, tokenizer, texts, answer_ids, batch_size)
    sync(device)
    ours = time.perf_counter() - start

    encoded = sorted((tokenizer(t)["input_ids"] for t in texts), key=len, reverse=True)
    batches = []
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i: i + batch_size]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        for row, seq in enumerate(chunk):
            ids[row, width - len(seq):] = torch.tensor(seq)
        batches.append(ids.to(device))
    with torch.inference_mode():
        model(input_ids=batches[0], logits_to_keep=1)
        sync(device)
        start = time.perf_counter()
        for ids in batches:
            model(input_ids=ids, logits_to_keep=1)
        sync(device)
    bare = time.perf_counter() - start
    return {"prompts": len(texts), "batch_size": batch_size,
            "ours_samples_per_s": len(texts) / ours, "bare_samples_per_s": len(texts) / bare,
            "ours_ms_per_sample": 1e3 * ours / len(texts), "slowdown_vs_bare": ours / bare}


def bench_training(base_dir: Path, tokenizer, texts, batch_size, steps, device, lora: LoraConfig) -> dict:
    examples = [encode(tokenizer, t, rec_response(i % 2)) for i, t in enumerate(texts[: batch_size * steps])]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    model = attach_lora(load_causal_lm(base_dir, dtype=dtype).to(device), lora)
    cfg = TrainConfig(lr=1e-4, epochs=1, batch_size=batch_size, cutoff=1024, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, examples, cfg, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=Path(tmp))
    ours = result.tokens_per_s
    del model

    # The bare loop: same examples, batches, LoRA and optimizer; no accelerate, no checkpoints, no bookkeeping.
    model = attach_lora(load_causal_lm(base_dir, dtype=dtype).to(device), lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    model.train()
    batches = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i: i + batch_size]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        for row, e in enumerate(chunk):
            ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
        batches.append((ids.to(device), labels.to(device), (ids != tokenizer.pad_token_id).long().to(device)))
    sync(device)
    start = time.perf_counter()
    for ids, labels, mask in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    bare = sum(len(e.input_ids) for e in examples) / (time.perf_counter() - start)
    return {"steps": steps, "batch_size": batch_size, "ours_tokens_per_s": ours, "bare_tokens_per_s": bare,
            "ours_vs_bare": ours / bare, "peak_memory_mb": result.peak_memory_mb,
            "mixed_precision": result.mixed_precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model.base: '' = embedded SmolLM2, or a local folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--score-prompts", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base_dir, source = resolve_base(ModelConfig(base=args.model))
    tokenizer = load_tokenizer(base_dir)
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    texts = prompts(max(args.score_prompts, args.batch_size * args.train_steps))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_causal_lm(base_dir, dtype=dtype).to(device).eval()

    report = {
        "model": source, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
        or platform.machine(), "torch_threads": torch.get_num_threads(), "dtype": str(dtype),
        "prompt_tokens_mean": sum(len(tokenizer(t)["input_ids"]) for t in texts) / len(texts),
        "scoring": bench_scoring(model, tokenizer, texts[: args.score_prompts], answer_ids, args.batch_size, device),
    }
    del model
    report["training"] = bench_training(base_dir, tokenizer, texts, args.batch_size, args.train_steps, device,
                                        LoraConfig())
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
