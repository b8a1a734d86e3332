"""Checkpoints as safetensors (no pickle) with the model spec in the file's own metadata, and
the training state (model + optimizer) an interrupted run resumes from."""
import json

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.errors import ModelError
from ..core.files import atomic_write
from .registry import create_model
from .spec import ModelSpec


def save_checkpoint(path, model: torch.nn.Module, spec: ModelSpec, extra: dict = None) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"edgetl.spec": json.dumps(spec.to_dict()), "edgetl.extra": json.dumps(extra or {})}
    atomic_write(path, lambda p: save_file(state, str(p), metadata=meta))


def read_spec(path) -> tuple:
    """(ModelSpec, extra dict) stored in a checkpoint, with a clear error for a foreign file."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{path}: not a readable safetensors checkpoint ({e})") from e
    if "edgetl.spec" not in meta:
        raise ModelError(f"{path}: no edgetl model spec in this safetensors file; "
                         "pass a checkpoint written by 'edgetl train'")
    return ModelSpec.from_dict(json.loads(meta["edgetl.spec"])), json.loads(meta["edgetl.extra"])


def load_weights(model: torch.nn.Module, path, expect_model: str = None) -> None:
    """Load a checkpoint into `model`, refusing one of another model or class count."""
    spec, _ = read_spec(path)
    if expect_model and spec.model != expect_model:
        raise ModelError(f"{path} is a {spec.model} checkpoint, not {expect_model}: "
                         f"pass --model {spec.model} or another checkpoint")
    from safetensors.torch import load_file
    state = load_file(str(path))
    own = model.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad:
        have = state.get("classifier.weight", torch.empty(0)).shape[:1]
        raise ModelError(f"{path} does not fit this {spec.model} with "
                         f"{own['classifier.weight'].shape[0]} classes (checkpoint classes: "
                         f"{tuple(have)}, first mismatch: {bad[0]}); train a new run or pass "
                         "the checkpoint of a run with the same classes")
    model.load_state_dict({k: state[k] for k in own})


def load_checkpoint(path) -> tuple:
    """Rebuild (model in eval mode, spec, extra) from a checkpoint alone."""
    spec, extra = read_spec(path)
    model, _ = create_model(spec.model, len(spec.labels), weights="none",
                            dropout=extra.get("dropout", 0.0))
    load_weights(model, path)
    return model.eval(), spec, extra


def save_training_state(path, model, optimizer, state: dict) -> None:
    """Model + optimizer tensors as safetensors, scalars and history as JSON metadata."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for name, value in slots.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value).contiguous()
    groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
    meta = {"state": json.dumps(state), "param_groups": json.dumps(groups)}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_training_state(path, model, optimizer) -> dict:
    from safetensors.torch import load_file
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["state"])
