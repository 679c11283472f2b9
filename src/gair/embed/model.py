"""A trained GAIR model rebuilt from its checkpoint alone, frozen, with its contract."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from gair.contract import CONTRACT_KEY, ContractError, LocationContract, PreprocessingContract
from gair.io.directories import staging_path
from gair.model import GAIR, GAIRConfig
from gair.model.official import convert_official, is_official
from gair.model.weights import WeightsError, load_into, read_state_dict, tensors_of
from gair.preprocessing import PairDecoder, preprocess_rs, preprocess_sv, resize_sv


@dataclass
class FrozenGAIR:
    """A GAIR model in eval mode, its preprocessing contract and the matching decoder of
    stored samples (validation's).

    The ``encode_*`` methods take arrays in the contract's units, check them against it,
    preprocess them as training's validation does (``gair.preprocessing``), and return
    L2-normalised embeddings as float32 numpy arrays, in batches.
    """

    model: GAIR
    contract: PreprocessingContract
    hparams: dict[str, Any]
    device: torch.device

    def __post_init__(self) -> None:
        self.decoder = PairDecoder(self.contract, train=False)

    @torch.no_grad()
    def encode_rs(self, reflectance: np.ndarray, valid: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Token grids [N, C, h, w] and global embeddings [N, D] of RS patches given as
        the contract says (reflectance x 10000 [N, 10, S, S]); ``valid`` [N, S, S] marks
        pixels with data (default: no band is 0)."""
        self.contract.rs.check(reflectance)
        reflectance = np.asarray(reflectance)
        if valid is None:
            valid = (reflectance != self.contract.rs.nodata).all(axis=1)
        rs = preprocess_rs(torch.from_numpy(np.ascontiguousarray(reflectance)).to(self.device),
                           torch.from_numpy(np.ascontiguousarray(valid, bool)).to(self.device),
                           self.contract.rs)
        grid, pooled = self.model.encode_rs(rs)
        return grid.float().cpu().numpy(), pooled.float().cpu().numpy()

    @torch.no_grad()
    def query_rs(self, grid: np.ndarray, query: np.ndarray) -> np.ndarray:
        """NILI-queried RS embeddings [N, D] of token grids [N, C, h, w] at query
        coordinates (x, y) in [-1, 1] [N, 2] (x west->east, y north->south)."""
        out = self.model.query_rs(torch.as_tensor(grid, device=self.device),
                                  torch.as_tensor(np.asarray(query, np.float32), device=self.device))
        return out.float().cpu().numpy()

    @torch.no_grad()
    def encode_street_views(self, images: list) -> np.ndarray:
        """Embeddings [N, D] of street views given as RGB PIL images (0-255)."""
        sv = torch.stack([resize_sv(TF.pil_to_tensor(image), self.contract.sv) for image in images])
        sv = preprocess_sv(sv.to(self.device), self.contract.sv)
        return self.model.encode_sv(sv).float().cpu().numpy()

    @torch.no_grad()
    def encode_locations(self, latlon: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Embeddings [N, D] of (lat, lon) in degrees [N, 2], in that order."""
        latlon = np.array(latlon, dtype=np.float32).reshape(-1, 2)  # a copy, C-ordered
        LocationContract.check(latlon)
        parts = [self.model.encode_location(torch.from_numpy(latlon[i : i + batch_size])
                                            .to(self.device))
                 .float().cpu().numpy() for i in range(0, len(latlon), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.model.config.embed_dim),
                                                             np.float32)


CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
FOLDER_FORMAT = "gair-pretrained"


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> FrozenGAIR:
    """Rebuild a GAIR model from what ``checkpoint`` names, alone: a folder written by
    :func:`save_pretrained` (safetensors + JSON, no pickle at all), a checkpoint of this
    project's training, or the official GAIR release (converted, with the official
    preprocessing contract; unused official keys are logged). Torch files are read with
    ``weights_only=True``: no code is unpickled, no configuration or network is needed."""
    path = Path(checkpoint)
    if path.is_dir():
        model, contract, hparams = _read_folder(path)
    else:
        content = read_state_dict(path)
        if CONTRACT_KEY in content:
            try:
                hparams = content["hyper_parameters"]
                model = GAIR(GAIRConfig.from_saved(hparams["model"]))
                state = {k.removeprefix("model."): v for k, v in content["state_dict"].items()
                         if k.startswith("model.")}
                contract = PreprocessingContract.from_dict(content[CONTRACT_KEY])
            except (KeyError, TypeError, AttributeError) as error:
                raise _incomplete(path, error) from error
            load_into(model, state, path)
        elif _is_official(content, path):
            model, _ = convert_official(content, path)
            config = model.config
            contract = PreprocessingContract.official(
                model_input_px=config.rs_encoder.img_size,
                sv_size_px=config.sv_encoder.img_size)
            hparams = {"model": config.architecture(),
                       "source": f"official GAIR release ({path.name})"}
        else:
            raise ContractError(f"{path}: neither a gair checkpoint (no preprocessing "
                                "contract), a save_pretrained folder, nor an official GAIR "
                                "checkpoint (no rs_encoder.s2_encoder.* keys)")
    device = torch.device(device)
    return FrozenGAIR(model.to(device).eval(), contract, hparams, device)


def _is_official(content: dict[str, object], path: Path) -> bool:
    try:
        return is_official(tensors_of(content, path))
    except WeightsError:
        return False


def _read_folder(folder: Path) -> tuple[GAIR, PreprocessingContract, dict[str, Any]]:
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise ContractError(f"{folder}: not a save_pretrained folder ({needed.name} missing)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"{config_path}: not valid JSON ({error})") from error
    if not isinstance(config, dict) or config.get("format") != FOLDER_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ContractError(f"{config_path}: format {found!r} where "
                            f"{FOLDER_FORMAT!r} is expected")
    try:
        model = GAIR(GAIRConfig.from_saved(config["model"]))
        contract = PreprocessingContract.from_dict(config["contract"])
    except (KeyError, TypeError, AttributeError) as error:
        raise _incomplete(config_path, error) from error
    load_into(model, read_state_dict(weights_path), weights_path)
    hparams = {"model": config["model"]} | {k: config[k] for k in ("source",) if k in config}
    return model, contract, hparams


def _incomplete(path: Path, error: Exception) -> WeightsError:
    """A stored configuration that cannot be read back (damaged, or written by another
    version): a missing key, an unknown or mistyped field."""
    return WeightsError(f"{path}: incomplete or unreadable model configuration "
                        f"({type(error).__name__}: {error})")


def save_pretrained(model: FrozenGAIR, folder: str | Path, trained_on: str | None = None,
                    evaluation: str | None = None) -> Path:
    """Write ``model`` as a folder anyone can load without pickle: ``model.safetensors``
    (weights), ``config.json`` (architecture and preprocessing contract) and a model card
    ``README.md`` (``trained_on``: what it was trained on; ``evaluation``: a Markdown
    table of its evaluation). The folder is written beside and moved into place, so a
    half-written folder never stands under ``folder``'s name."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder}: exists and is not empty; choose a new folder")
    staging = staging_path(folder, "partial")  # unique: two writers never share one
    staging.mkdir(parents=True)
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        config = {"format": FOLDER_FORMAT, "format_version": 1,
                  "model": model.model.config.architecture(),
                  "contract": model.contract.to_dict(),
                  "source": model.hparams.get("source", "gair pretraining")}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        (staging / CARD_FILE).write_text(model_card(model, trained_on, evaluation))
        if folder.exists():
            folder.rmdir()
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def model_card(model: FrozenGAIR, trained_on: str | None, evaluation: str | None) -> str:
    """A short model card: what the model is, what it expects, how it was trained."""
    config, contract = model.model.config, model.contract
    parts = {name: sum(p.numel() for p in getattr(model.model, name).parameters())
             for name in ("rs_encoder", "sv_encoder", "location_encoder", "nili", "sv_proj")}
    lines = [
        "# GAIR model", "",
        "Geo-aligned embeddings of Sentinel-2 patches, street views and locations "
        "(GAIR, arXiv 2503.16683), saved by the `gair` project: "
        "`gair.load_model(\"<this folder>\")` loads it without pickle.", "",
        f"- Source: {model.hparams.get('source', 'gair pretraining')}",
        f"- Trained on: {trained_on or 'not stated'}",
        f"- Embedding size: {config.embed_dim}; RS encoder `{config.rs_encoder.name}` at "
        f"{contract.rs.model_input_px} px; SV encoder `{config.sv_encoder.name}` at "
        f"{contract.sv.size_px} px; query `{config.query_mode}`",
        "- Parameters: " + ", ".join(f"{k} {v:,}" for k, v in parts.items()),
        f"- RS input: bands {', '.join(contract.rs.bands)}, {contract.rs.units}, "
        f"{contract.rs.normalization} normalisation, {contract.rs.interpolation} resize",
        f"- SV input: RGB 0-255, mean {list(contract.sv.mean)}, std {list(contract.sv.std)}",
        "- Locations: (lat, lon) in degrees, WGS 84", "",
        "## Evaluation", "", evaluation or "Not evaluated.", "",
    ]
    return "\n".join(lines)


def random_like(trained: FrozenGAIR, seed: int) -> FrozenGAIR:
    """The same architecture and preprocessing as ``trained`` with random weights (the
    random-weights baseline), initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GAIR(GAIRConfig.from_saved(trained.hparams["model"]))
    return FrozenGAIR(model.to(trained.device).eval(), trained.contract, trained.hparams,
                      trained.device)
