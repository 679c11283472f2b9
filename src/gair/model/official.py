"""The released GAIR checkpoint (official code, ``checkpoint.pth``) as this project's model.

The official state dict names its parts ``rs_encoder.s2_encoder.*`` (CROMA),
``sv_encoder.*`` (a Hugging Face ``ViTModel``, transformers 4.x or 5.x names),
``location_encoder.LocEnc{j}.*`` (GeoCLIP's), ``imnet`` (NILI) and ``optical_proj`` (the
SV projection). The architecture is read off the shapes; what GAIR's embeddings never use
is listed in :data:`UNUSED_PREFIXES` and reported, never silently dropped.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import torch

from gair.model.encoders import CROMA, SVEncoder, hf_vit_to_timm
from gair.model.gair import GAIR, GAIRConfig
from gair.model.weights import WeightsError, load_into, subtree, tensors_of

logger = logging.getLogger(__name__)

UNUSED_PREFIXES = (
    "nerf_fn.",                 # a transformer decoder of an older query path
    "query_feature",            # its learned query token
    "rs_patch_pos_encoding",    # its patch position encoding
    "radar_proj.", "location_proj.",  # projections the losses never use
    "queue_for_location", "queue_ptr_location",  # the training queue
    "logit_scale",              # fixed temperature 0.07
    "rs_encoder.layer_norm.", "rs_encoder.head.",  # CROMA's classifier, unused by GAIR
    "rs_encoder.s2_encoder.transformer.norm_out.",
    # The training model of the first commit also holds its frozen teachers, student
    # projectors and a second queue.
    "rs_encoder_teacher.", "sv_encoder_teacher.", "rs_student_projector.",
    "sv_student_projector.", "queue_for_rs_encoding", "queue_ptr_rs",
)
CROMA_HEADS = 16
CROMA_PATCH = 8
RS_INPUT_PX = 96
SV_HEADS = 12
SV_ATTENTION_DROPOUT = 0.1
HF_LAYER_NORM_EPS = 1e-12


def is_official(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("rs_encoder.s2_encoder.") for k in state)


def _count_layers(state: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def official_config(state: dict[str, torch.Tensor]) -> GAIRConfig:
    """The architecture of an official state dict, read from its shapes (the head counts,
    which shapes cannot tell, are the official 16 for CROMA and 12 for the SV ViT)."""
    rs_width, rs_pixels = state["rs_encoder.s2_encoder.linear_input.weight"].shape
    sv = hf_vit_to_timm(subtree(state, "sv_encoder.", whole_if_absent=False))
    sv_width, _, sv_patch, _ = sv["patch_embed.proj.weight"].shape
    sv_tokens = sv["pos_embed"].shape[1] - 1
    location_b = state["location_encoder.LocEnc0.capsule.0.b"]
    return GAIRConfig(
        embed_dim=int(state["imnet.weight"].shape[0]),
        rs_encoder={"name": CROMA, "img_size": RS_INPUT_PX, "patch_size": CROMA_PATCH,
                    "in_chans": rs_pixels // CROMA_PATCH**2, "embed_dim": int(rs_width),
                    "depth": _count_layers(state, r"rs_encoder\.s2_encoder\.transformer\.layers\.(\d+)\."),
                    "num_heads": CROMA_HEADS},
        sv_encoder={"name": "vit_base_patch16_224",
                    "img_size": math.isqrt(sv_tokens) * int(sv_patch),
                    "patch_size": int(sv_patch), "embed_dim": int(sv_width),
                    "depth": _count_layers(sv, r"blocks\.(\d+)\."), "num_heads": SV_HEADS,
                    "pooler": True, "layer_norm_eps": HF_LAYER_NORM_EPS,
                    "attn_drop_rate": SV_ATTENTION_DROPOUT},
        location_encoder={
            "sigmas": [1.0, 16.0, 256.0], "n_features": int(location_b.shape[0]),
            "hidden_dim": int(state["location_encoder.LocEnc0.capsule.1.weight"].shape[0]),
            "depth": _count_layers(state, r"location_encoder\.LocEnc0\.capsule\.(\d+)\.weight")},
        query_mode="nili", imnet_hidden=[], nili_offset_scale="grid",
    )


def to_project_names(state: dict[str, torch.Tensor], model: GAIR) -> dict[str, torch.Tensor]:
    """Official names -> this project's (unused keys are left out; see UNUSED_PREFIXES)."""
    out: dict[str, torch.Tensor] = {}
    sv = SVEncoder.from_timm_names(
        hf_vit_to_timm(subtree(state, "sv_encoder.", whole_if_absent=False)))
    out |= {f"sv_encoder.{k}": v for k, v in sv.items()}
    location = model.location_encoder.from_geoclip_names(
        subtree(state, "location_encoder.", whole_if_absent=False))
    out |= {f"location_encoder.{k}": v for k, v in location.items()}
    for key, value in state.items():
        if key.startswith(UNUSED_PREFIXES) or key.startswith(("sv_encoder.", "location_encoder.")):
            continue
        if key.startswith("rs_encoder.s2_encoder."):
            out["rs_encoder." + key.removeprefix("rs_encoder.s2_encoder.")] = value
        elif key.startswith("imnet."):
            out["nili.imnet." + key.removeprefix("imnet.")] = value
        elif key.startswith("optical_proj."):
            out["sv_proj." + key.removeprefix("optical_proj.")] = value
        else:
            out[key] = value  # not an official key: reported as unexpected
    return out


def convert_official(content: dict[str, object], path: str | Path) -> tuple[GAIR, list[str]]:
    """A GAIR model holding the official weights, and the official keys it left unused.

    ``content`` is what :func:`gair.model.weights.read_state_dict` read from ``path``
    (the state dict itself, or ``{"model": state_dict, ...}``; ``module.`` prefixes go).
    """
    state = tensors_of(content, path)
    if not is_official(state):
        raise WeightsError(f"{path}: not an official GAIR checkpoint (no "
                           f"rs_encoder.s2_encoder.* keys; first keys: "
                           f"{', '.join(list(state)[:5])})")
    try:
        config = official_config(state)
    except KeyError as error:
        raise WeightsError(f"{path}: official GAIR checkpoint lacks {error}") from error
    model = GAIR(config)
    load_into(model, to_project_names(state, model), path)
    unused = sorted(k for k in state if k.startswith(UNUSED_PREFIXES))
    logger.info("%s: official GAIR weights converted; %d key(s) not used by GAIR's "
                "embeddings: %s", path, len(unused),
                ", ".join(p.rstrip(".") for p in UNUSED_PREFIXES
                          if any(k.startswith(p) for k in unused)))
    return model, unused
