"""Attention fusion of an item's modalities and the projector into the LLM's token space (paper eq. 7-8; CoLLM).

For one soft token (an item in a user's prompt) with modality vectors x_m (m present) and a context c (the user's
vector; a learned "no context" query when the user has none):

    h_m   = W_m x_m                                             per-modality projection to fusion_dim (the bank
                                                                scales each modality to unit mean norm; no
                                                                LayerNorm: it would remove the mean of the
                                                                affinity vector, which is the CF score itself)
    a_m   = softmax over present m of  (W_q c) . (W_k h_m) / sqrt(fusion_dim)     (eq. 7: context-conditioned)
    z     = sum_m a_m h_m                                       (eq. 8)
    token = s * normalize(MLP(z))                               the projector; s starts at the mean norm of the
                                                                LLM's own token embeddings, so a soft token starts
                                                                at the scale the model expects
A missing modality gets weight exactly 0 (masked before the softmax); a slot with no modality at all is an error.
The user token is token = s * normalize(MLP_u(c)), or a learned "unknown user" embedding when c is missing.

Saved as safetensors next to the LoRA adapter, with a JSON config (dimensions, modalities, the feature table's
content hash), and verified on load: a fusion never runs on features it was not trained with.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from explainrec_core.errors import ExplainRecError

WEIGHTS = "fusion.safetensors"
CONFIG = "fusion_config.json"


class FusionError(ExplainRecError):
    """A saved fusion is missing, corrupt, or does not match the features or the LLM it is used with."""


@dataclass(frozen=True)
class FusionSpec:
    modality_dims: dict[str, int]
    """Input dimension of each modality the fusion attends over (in this order)."""
    context_dim: int
    """Dimension of the user vector (the collaborative dimension)."""
    fusion_dim: int
    hidden_size: int
    """The LLM's token-embedding width."""
    token_norm: float
    """Initial norm of a soft token: the mean norm of the LLM's token embeddings."""
    user_token: bool
    features_sha256: str
    """Content hash of the item_features table the fusion was trained on."""


class ModalityFusion(nn.Module):
    def __init__(self, spec: FusionSpec) -> None:
        super().__init__()
        self.spec = spec
        self.modalities = list(spec.modality_dims)
        d = spec.fusion_dim
        self.project = nn.ModuleDict({m: nn.Linear(dim, d) for m, dim in spec.modality_dims.items()})
        self.query = nn.Linear(spec.context_dim, d)
        self.no_context = nn.Parameter(torch.zeros(d))  # query without a user vector: uniform attention at start
        self.key = nn.Linear(d, d)
        self.projector = nn.Sequential(nn.Linear(d, spec.hidden_size), nn.GELU(),
                                       nn.Linear(spec.hidden_size, spec.hidden_size))
        self.scale = nn.Parameter(torch.tensor(float(spec.token_norm)))
        if spec.user_token:
            self.user_projector = nn.Sequential(nn.Linear(spec.context_dim, spec.hidden_size), nn.GELU(),
                                                nn.Linear(spec.hidden_size, spec.hidden_size))
            self.unknown_user = nn.Parameter(torch.randn(spec.hidden_size) * spec.token_norm / math.sqrt(
                spec.hidden_size))

    def item_tokens(self, features: dict[str, torch.Tensor], present: torch.Tensor, context: torch.Tensor,
                    has_context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (n, hidden_size), attention weights (n, n_modalities)) for n item slots.

        features[m]: (n, dim_m) (any values where absent); present: (n, n_modalities) bool in `self.modalities`
        order; context: (n, context_dim); has_context: (n,) bool."""
        if present.shape[1] != len(self.modalities):
            raise FusionError(f"{present.shape[1]} modality masks for {len(self.modalities)} modalities")
        if not bool(present.any(dim=1).all()):
            raise FusionError("an item slot has no modality at all: nothing to build its token from")
        h = torch.stack([self.project[m](features[m]) for m in self.modalities], dim=1)  # (n, M, d)
        q = torch.where(has_context[:, None], self.query(context), self.no_context)  # (n, d)
        logits = (self.key(h) * q[:, None, :]).sum(-1) / math.sqrt(self.spec.fusion_dim)
        weights = torch.softmax(logits.masked_fill(~present, float("-inf")), dim=1)
        fused = (weights[:, :, None] * h).sum(1)
        return self.scale * F.normalize(self.projector(fused), dim=-1), weights

    def user_tokens(self, context: torch.Tensor, has_context: torch.Tensor) -> torch.Tensor:
        if not self.spec.user_token:
            raise FusionError("this fusion was built without a user token")
        tokens = self.scale * F.normalize(self.user_projector(context), dim=-1)
        return torch.where(has_context[:, None], tokens, self.unknown_user)


def save_fusion(fusion: ModalityFusion, folder: Path) -> None:
    """Write the fusion's weights and spec into `folder` (the adapter's staging folder: it is swapped into place
    with the adapter, atomically)."""
    folder = Path(folder)
    state = {k: v.detach().float().contiguous().cpu() for k, v in fusion.state_dict().items()}
    save_file(state, folder / WEIGHTS)
    # Not sort_keys: the order of modality_dims is the order of the attention's modalities.
    (folder / CONFIG).write_text(json.dumps(asdict(fusion.spec), indent=2) + "\n")


def load_fusion(folder: Path, *, features_sha256: str | None = None,
                modality_dims: dict[str, int] | None = None, hidden_size: int | None = None) -> ModalityFusion:
    """The fusion saved in `folder`, checked against the features and the LLM it will run with."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise FusionError(f"{folder / name}: missing (the adapter has no item-token fusion)")
    try:
        spec = FusionSpec(**json.loads((folder / CONFIG).read_text()))
        state = load_file(folder / WEIGHTS)
    except Exception as exc:
        raise FusionError(f"{folder}: unreadable fusion ({type(exc).__name__}: {exc})") from None
    if modality_dims is not None and list(modality_dims.items()) != list(spec.modality_dims.items()):
        raise FusionError(f"{folder / CONFIG}: trained on modality dimensions {spec.modality_dims}, the features "
                          f"have {dict(modality_dims)}")
    if hidden_size is not None and hidden_size != spec.hidden_size:
        raise FusionError(f"{folder / CONFIG}: trained for hidden size {spec.hidden_size}, the LLM has {hidden_size}")
    if features_sha256 is not None and features_sha256 != spec.features_sha256:
        raise FusionError(f"{folder / CONFIG}: trained on item features {spec.features_sha256[:12]}, given "
                          f"{features_sha256[:12]} (rebuild the item-token adapter on these features)")
    fusion = ModalityFusion(spec)
    try:
        fusion.load_state_dict(state)
    except RuntimeError as exc:
        raise FusionError(f"{folder / WEIGHTS}: does not match its config ({exc})") from None
    bad = [k for k, t in state.items() if not torch.isfinite(t).all()]
    if bad:
        raise FusionError(f"{folder / WEIGHTS}: non-finite values in {bad[:3]}")
    return fusion.eval()
