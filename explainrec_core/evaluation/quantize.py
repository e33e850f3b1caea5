"""Dynamic int8 for CPU scoring: the LoRA merged into a copy of the base, then its linear layers quantised.

`torch.ao.quantization.quantize_dynamic` stores each nn.Linear's weights as int8 (one scale per output channel)
and quantises the activations per batch on the fly; on an x86 CPU with AVX-512 VNNI the int8 matrix products run
about 4x faster than fp32 (fbgemm). The LoRA adapter is merged first (peft's `merge_and_unload`) so every
projection is one quantised matrix instead of a quantised base plus an fp32 low-rank detour.

The output projection (lm_head) stays fp32: it is tied to the input embeddings, it turns hidden states straight
into the Yes/No logits, and scoring computes it for one position per prompt only, so quantising it would cost
accuracy for no speed.

Only for inference on a CPU: the copy shares nothing with the model it came from, so training the original does
not change it (quantise again after training).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def is_int8(model) -> bool:
    """True when the model already has dynamically quantised linear layers."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return any(isinstance(m, DynamicQuantizedLinear) for m in model.modules())


def int8_copy(model, keep_fp32: tuple[str, ...] = ()):
    """A merged, dynamically int8-quantised copy of `model` (a transformers causal LM, with or without a peft
    adapter), in eval mode. The model passed in is left as it is. `keep_fp32`: linear layers whose name contains
    one of these (e.g. "down_proj", whose inputs carry the activation outliers) stay fp32
    (scripts/int8_sensitivity.py measures what each choice does to P(Yes) and AUC)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if next(model.parameters()).device.type != "cpu":
        raise ValueError("dynamic int8 quantisation runs on the CPU only; score on the GPU in bf16/fp32 instead")
    merged = copy.deepcopy(model)
    if hasattr(merged, "merge_and_unload"):  # a peft model: fold B @ A * scaling into the base weights
        merged = merged.merge_and_unload()
    merged = merged.float().eval()
    head = merged.get_output_embeddings()
    targets = {name: per_channel_dynamic_qconfig for name, module in merged.named_modules()
               if isinstance(module, nn.Linear) and module is not head
               and not any(part in name for part in keep_fp32)}
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager API still works in torch 2.x and is
        # the only dynamic int8 path with fbgemm's VNNI kernels that needs no extra package.
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return quantize_dynamic(merged, targets, dtype=torch.qint8, inplace=True)
