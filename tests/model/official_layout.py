"""State dicts laid out as the released GAIR checkpoint (keys and shapes from the reference
key table), with random values, at any width; and CROMA's released file layout."""

from __future__ import annotations

import torch

UNUSED = ("nerf_fn.", "query_feature", "rs_patch_pos_encoding", "radar_proj.",
          "location_proj.", "queue_for_location", "queue_ptr_location", "logit_scale",
          "rs_encoder.layer_norm.", "rs_encoder.head.", "rs_encoder_teacher.",
          "sv_encoder_teacher.", "rs_student_projector.", "sv_student_projector.",
          "queue_for_rs_encoding", "queue_ptr_rs")


def croma_layers(width: int, depth: int, prefix: str = "") -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(depth):
        layer = f"{prefix}transformer.layers.{i}"
        shapes |= {
            f"{layer}.0.to_qkv.weight": (3 * width, width),
            f"{layer}.0.to_out.weight": (width, width), f"{layer}.0.to_out.bias": (width,),
            f"{layer}.0.input_norm.weight": (width,), f"{layer}.0.input_norm.bias": (width,),
            f"{layer}.1.net.0.weight": (4 * width, width), f"{layer}.1.net.0.bias": (4 * width,),
            f"{layer}.1.net.3.weight": (width, 4 * width), f"{layer}.1.net.3.bias": (width,),
            f"{layer}.1.input_norm.weight": (width,), f"{layer}.1.input_norm.bias": (width,),
        }
    return shapes


def official_shapes(width: int = 768, depth: int = 12, bands: int = 10, patch: int = 8,
                    sv_tokens: int = 196, sv_patch: int = 16, loc_features: int = 256,
                    loc_hidden: int = 1024, hf: str = "4",
                    training: bool = False) -> dict[str, tuple[int, ...]]:
    """Every key of the official GAIR state dict and its shape (width 768 = the release);
    ``training`` adds what the first commit's training model also holds (its teachers,
    student projectors and RS queue)."""
    rs = "rs_encoder.s2_encoder."
    shapes = {f"{rs}linear_input.weight": (width, patch * patch * bands),
              f"{rs}linear_input.bias": (width,)}
    shapes |= croma_layers(width, depth, rs)
    shapes |= {"rs_encoder.layer_norm.weight": (width,), "rs_encoder.layer_norm.bias": (width,),
               "rs_encoder.head.weight": (10, width), "rs_encoder.head.bias": (10,)}
    sv = "sv_encoder."
    shapes |= {f"{sv}embeddings.cls_token": (1, 1, width),
               f"{sv}embeddings.position_embeddings": (1, sv_tokens + 1, width),
               f"{sv}embeddings.patch_embeddings.projection.weight": (width, 3, sv_patch, sv_patch),
               f"{sv}embeddings.patch_embeddings.projection.bias": (width,)}
    for i in range(depth):
        if hf == "4":
            layer = f"{sv}encoder.layer.{i}."
            linear = {f"attention.attention.{n}": (width, width) for n in ("query", "key", "value")}
            linear |= {"attention.output.dense": (width, width),
                       "intermediate.dense": (4 * width, width), "output.dense": (width, 4 * width)}
        else:
            layer = f"{sv}layers.{i}."
            linear = {f"attention.{n}_proj": (width, width) for n in "qkvo"}
            linear |= {"mlp.fc1": (4 * width, width), "mlp.fc2": (width, 4 * width)}
        for name, shape in linear.items():
            shapes |= {f"{layer}{name}.weight": shape, f"{layer}{name}.bias": (shape[0],)}
        for norm in ("layernorm_before", "layernorm_after"):
            shapes |= {f"{layer}{norm}.weight": (width,), f"{layer}{norm}.bias": (width,)}
    shapes |= {f"{sv}layernorm.weight": (width,), f"{sv}layernorm.bias": (width,),
               f"{sv}pooler.dense.weight": (width, width), f"{sv}pooler.dense.bias": (width,)}
    for j in range(3):
        loc = f"location_encoder.LocEnc{j}."
        shapes[f"{loc}capsule.0.b"] = (loc_features, 2)
        for k, fan_in in ((1, 2 * loc_features), (3, loc_hidden), (5, loc_hidden)):
            shapes |= {f"{loc}capsule.{k}.weight": (loc_hidden, fan_in),
                       f"{loc}capsule.{k}.bias": (loc_hidden,)}
        shapes |= {f"{loc}head.0.weight": (width, loc_hidden), f"{loc}head.0.bias": (width,)}
    shapes |= {"imnet.weight": (width, 9 * width + 2), "imnet.bias": (width,)}
    for proj in ("optical_proj", "location_proj", "radar_proj"):
        shapes |= {f"{proj}.weight": (width, width), f"{proj}.bias": (width,)}
    shapes |= {"logit_scale": (), "query_feature": (1, 1, width),
               "rs_patch_pos_encoding": (1, (96 // patch) ** 2, width),
               "queue_for_location": (2, 4096), "queue_ptr_location": (1,),
               "nerf_fn.layers.0.self_attn.in_proj_weight": (3 * width, width),
               "nerf_fn.layers.0.linear1.weight": (4 * width, width)}
    if training:
        shapes |= {"rs_encoder_teacher.s2_encoder.linear_input.weight": (width, 64 * bands),
                   "sv_encoder_teacher.embeddings.cls_token": (1, 1, width),
                   "rs_student_projector.0.weight": (width, width),
                   "sv_student_projector.0.weight": (width, width),
                   "queue_for_rs_encoding": (width, 4096), "queue_ptr_rs": (1,)}
    return shapes


def official_state_dict(seed: int = 0, **sizes) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_shapes(**sizes).items():
        if key.startswith("queue_ptr"):
            state[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("capsule.0.b"):
            state[key] = torch.randn(shape, generator=generator) * 4
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def croma_release(width: int, depth: int, bands: int = 12, seed: int = 0) -> dict[str, object]:
    """A file laid out as CROMA's ``CROMA_base.pt``: one state dict per part."""
    generator = torch.Generator().manual_seed(seed)

    def tensors(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        return {k: torch.randn(s, generator=generator) * 0.05 for k, s in shapes.items()}

    s2 = {"linear_input.weight": (width, 64 * bands), "linear_input.bias": (width,),
          "transformer.norm_out.weight": (width,), "transformer.norm_out.bias": (width,)}
    s2 |= croma_layers(width, depth)
    s1 = {"linear_input.weight": (width, 64 * 2), "linear_input.bias": (width,)}
    return {"s1_encoder": tensors(s1), "s2_encoder": tensors(s2),
            "s2_GAP_FFN": tensors({"ffn.0.weight": (4 * width, width)}),
            "joint_encoder": tensors({"transformer.layers.0.0.to_qkv.weight": (3 * width, width)})}
