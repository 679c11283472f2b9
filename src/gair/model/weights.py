"""Reading local weight files into modules, with errors that name the file and the misfits.

Every pretrained initialisation (CROMA, an ImageNet-21k ViT, GeoCLIP, the released GAIR
checkpoint) goes through :func:`read_state_dict` and :func:`load_into`: nothing is ever
downloaded, pickled code is never run (``torch.load(weights_only=True)`` or safetensors),
and a key or shape that does not fit is an error, never a silent partial load.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

MAX_LISTED = 8


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not fit the module it is loaded into."""


def read_state_dict(path: str | Path) -> dict[str, object]:
    """The raw content of a local weights file (``.safetensors``, or a torch file read with
    ``weights_only=True``; an ``argparse.Namespace``, as MAE-style training scripts store
    under ``args``, is the one class allowed besides tensors and plain types)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file (weights are only read from local "
                           "files; nothing is downloaded)")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes; an interrupted download or copy?)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except SafetensorError as error:
            raise WeightsError(f"{path}: not a readable safetensors file ({error}); truncated "
                               "or corrupt?") from error
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"{path}: cannot be read as weights with weights_only=True ({_first_line(error)}). "
            "If it pickles other objects, re-save only its tensors: torch.save({k: v for k, v "
            "in sd.items() if isinstance(v, torch.Tensor)}, 'clean.pth')") from error
    except Exception as error:  # a damaged file raises almost anything from torch.load
        raise WeightsError(f"{path}: not a readable torch file ({type(error).__name__}: "
                           f"{_first_line(error).split('. ')[0]}); truncated or corrupt?",
                           ) from error
    if not isinstance(content, Mapping):
        raise WeightsError(f"{path}: holds a {type(content).__name__}, not a state dict")
    return dict(content)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def tensors_of(content: Mapping[str, object], path: str | Path,
               containers: Collection[str] = ("model", "state_dict")) -> dict[str, torch.Tensor]:
    """The state dict inside ``content``: the first of ``containers`` that holds a mapping,
    else ``content`` itself; a DDP ``module.`` prefix is removed."""
    for key in containers:
        if isinstance(content.get(key), Mapping):
            content = content[key]
            break
    tensors = {k.removeprefix("module."): v for k, v in content.items()
               if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: no tensors found (top-level keys: "
                           f"{', '.join(list(map(str, content))[:MAX_LISTED])})")
    return tensors


def subtree(state: Mapping[str, torch.Tensor], *prefixes: str,
            whole_if_absent: bool = True) -> dict[str, torch.Tensor]:
    """The keys under the first of ``prefixes`` that ``state`` has, with the prefix
    removed; when it has none of them, ``state`` itself (or nothing)."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return dict(state) if whole_if_absent else {}


def keep_fresh_if_reshaped(state: Mapping[str, torch.Tensor], layer: nn.Module, prefix: str,
                           path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Where the file's ``<prefix>weight`` has another shape than ``layer``'s (a patch
    projection for another band count), ``state`` with the layer's fresh weight and bias
    in its place, and their keys; else ``state`` unchanged and no keys."""
    own = layer.state_dict()
    in_file = state.get(f"{prefix}weight")
    if in_file is None or in_file.shape == own["weight"].shape:
        return dict(state), []
    logger.info("%s: %sweight %s re-initialised (model %s)", path, prefix,
                list(in_file.shape), list(own["weight"].shape))
    fresh = {f"{prefix}{k}": v for k, v in own.items()}
    return dict(state) | fresh, list(fresh)


def _listed(items: list[str]) -> str:
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path,
              ignore: Callable[[str], bool] = lambda key: False,
              reinit: Collection[str] = ()) -> list[str]:
    """Load ``state`` into ``module`` strictly; raise :class:`WeightsError` naming ``path``
    and the first missing, unexpected and mis-shaped keys. Returns the keys that kept
    their fresh initialisation.

    ``ignore(key)`` marks file keys that are known not to belong to the module (logged);
    keys in ``reinit`` keep the module's fresh initialisation when the file's shape differs
    (the patch projection of another band count, a head of another width; logged).
    """
    own = module.state_dict()
    ignored = sorted(k for k in state if k not in own and ignore(k))
    unexpected = sorted(k for k in state if k not in own and not ignore(k))
    missing = sorted(k for k in own if k not in state)
    kept_fresh, misfit = [], []
    for key in sorted(k for k in state if k in own):
        if tuple(state[key].shape) != tuple(own[key].shape):
            (kept_fresh if key in reinit else misfit).append(key)

    def shapes(key: str) -> str:
        return f"{key} {list(state[key].shape)} (model {list(own[key].shape)})"

    if missing or unexpected or misfit:
        problems = [f"{label}: {_listed(keys)}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", [shapes(k) for k in misfit])) if keys]
        raise WeightsError(f"{path}: does not fit {type(module).__name__}; "
                           + "; ".join(problems))
    fitting = {k: v for k, v in state.items() if k in own and k not in kept_fresh}
    module.load_state_dict(fitting, strict=False)
    if ignored:
        logger.info("%s: ignored %d key(s) that %s does not use: %s", path, len(ignored),
                    type(module).__name__, _listed(ignored))
    if kept_fresh:
        logger.info("%s: re-initialised (shape differs from the file): %s", path,
                    _listed([shapes(k) for k in kept_fresh]))
    return kept_fresh
