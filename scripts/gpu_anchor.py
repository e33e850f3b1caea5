"""Bare-loop anchor timings (no project code: the yardstick scripts/bench_llm.py compares against) for the TALLRec recipe on a GPU (random weights: speed does not depend on values).

Measures, for a LLaMA-7B-shaped model and a SmolLM2-135M-shaped model, in bf16:
  * scoring: next-token logits for a ~256-token recommendation prompt, per sample, at several batch sizes
  * prefix sharing: one 230-token user-history prefix, then 20 candidate suffixes of 26 tokens reusing its KV cache
  * LoRA (r=8, q_proj/v_proj) training step on 32 x 256 tokens: tokens/s, model FLOP utilisation, peak memory
"""
import json, math, os, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicCache

torch.backends.cuda.matmul.allow_tf32 = True
dev = "cuda"
PEAK = float(os.environ.get("PEAK_TFLOPS", "790")) * 1e12  # bf16 dense matmul ceiling of an H100/H200 (set PEAK_TFLOPS for another GPU)
out = {}

def build(cfg):
    torch.manual_seed(0)
    with torch.device("meta"):
        m = LlamaForCausalLM(cfg)
    m = m.to_empty(device=dev).to(torch.bfloat16)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.02)
    m.eval()
    return m

def timed(fn, reps=10, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]

def run(name, cfg):
    r = {}
    m = build(cfg)
    n = sum(p.numel() for p in m.parameters())
    r["params"] = n
    V = cfg.vocab_size
    # scoring
    for bs in (1, 32, 128):
        ids = torch.randint(100, V, (bs, 256), device=dev)
        with torch.inference_mode():
            ms = timed(lambda: m(input_ids=ids, logits_to_keep=1))
        r[f"score_ms_per_sample_bs{bs}"] = ms / bs
    r["score_floor_ms_per_sample"] = 2 * n * 256 / PEAK * 1e3
    # prefix sharing: 230-token prefix once, then 20 candidates x 26 tokens
    pre = torch.randint(100, V, (1, 230), device=dev)
    suf = torch.randint(100, V, (20, 26), device=dev)
    def shared():
        with torch.inference_mode():
            o = m(input_ids=pre, use_cache=True, logits_to_keep=1)
            kv = o.past_key_values
            pairs = [(l.keys, l.values) for l in kv.layers] if hasattr(kv, "layers") else kv.to_legacy_cache()
            cache = DynamicCache()
            for li, (k, v) in enumerate(pairs):
                cache.update(k.expand(20, -1, -1, -1).contiguous(), v.expand(20, -1, -1, -1).contiguous(), li)
            m(input_ids=suf, past_key_values=cache, logits_to_keep=1)
    def naive():
        ids = torch.cat([pre.expand(20, -1), suf], dim=1)
        with torch.inference_mode():
            m(input_ids=ids, logits_to_keep=1)
    try:
        r["rank20_shared_prefix_ms"] = timed(shared)
    except Exception as exc:  # keep the rest of the run
        r["rank20_shared_prefix_error"] = repr(exc)[:300]
    r["rank20_naive_ms"] = timed(naive)
    # LoRA training step
    from peft import LoraConfig, get_peft_model
    m.train()
    pm = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    for p in pm.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    B, T = 32, 256
    ids = torch.randint(100, V, (B, T), device=dev)
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = pm(input_ids=ids, labels=ids).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    torch.cuda.reset_peak_memory_stats()
    ms = timed(step, reps=5, warm=2)
    r["lora_step_ms"] = ms
    r["lora_tokens_per_s"] = B * T / (ms / 1e3)
    r["lora_mfu_4NT"] = (4 * n * B * T) / (ms / 1e3) / PEAK
    r["lora_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del pm, m, opt
    torch.cuda.empty_cache()
    out[name] = r
    print(name, json.dumps(r), flush=True)

print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
# matmul ceiling
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16); b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
ms = timed(lambda: a @ b)
out["bf16_matmul_tflops"] = 2 * 8192**3 / (ms / 1e3) / 1e12
print("matmul TFLOP/s", out["bf16_matmul_tflops"], flush=True)
del a, b
smol = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3, max_position_embeddings=8192, tie_word_embeddings=True, rms_norm_eps=1e-5)
run("smollm2_135m_shape", smol)
llama7 = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, max_position_embeddings=2048)
run("llama_7b_shape", llama7)
json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "gpu_anchor.json"), "w"), indent=1)
