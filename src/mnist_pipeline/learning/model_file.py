"""A trained model's file: safetensors weights, with the ``ModelSpec``, loss, output function,
class names, calibrating temperature and "unsure" threshold as metadata, so evaluate and
predict need no ``params.yaml``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError, one_line
from mnist_pipeline.data.tensors import load_tensors, read_tensor_metadata, save_tensors
from mnist_pipeline.learning.losses import LOSSES
from mnist_pipeline.learning.models import ModelSpec, build_model
from mnist_pipeline.learning.params import UNSURE_BELOW


def save_model(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    loss: str,
    output: str,
    classes: tuple[str, ...] = (),
    temperature: float = 1.0,
    unsure_below: float = UNSURE_BELOW,
) -> None:
    metadata = {"spec": spec.to_json(), "loss": loss, "output": output}
    if classes:
        metadata["classes"] = json.dumps(list(classes))
    if temperature != 1.0:  # 1.0, no calibration, is the absence of the key
        metadata["temperature"] = str(temperature)
    if unsure_below != UNSURE_BELOW:  # the default is the absence of the key
        metadata["unsure_below"] = str(unsure_below)
    save_tensors(model.state_dict(), path, metadata=metadata)


def _check_weights(path: Path, spec: ModelSpec, tensors: dict[str, Tensor]) -> None:
    """The tensors have exactly the names, shapes and dtypes of the spec's model (built on the
    meta device: nothing allocated), and are all finite."""
    with torch.device("meta"):
        want = build_model(spec).state_dict()
    for name in [*want, *(k for k in sorted(tensors) if k not in want)]:
        have, need = tensors.get(name), want.get(name)
        if have is None or need is None or (have.dtype, have.shape) != (need.dtype, need.shape):
            found = "missing" if have is None else f"{have.dtype} {list(have.shape)}"
            expected = "nothing" if need is None else f"{need.dtype} {list(need.shape)}"
            raise PipelineError(
                f"{path}: weights do not fit the {spec.name} architecture in its metadata "
                f"({name}: {found}, expected {expected}); rerun the train stage"
            )
        if not bool(torch.isfinite(have).all()):
            raise PipelineError(
                f"{path}: {name} holds NaN or infinite weights; the model is unusable: "
                "rerun the train stage (lower train.lr if it diverged)"
            )


def model_calibration(path: Path) -> tuple[float, float]:
    """The temperature that calibrates the model's probabilities (1.0 when none is stored) and
    the top probability below which it is unsure; ``load_model`` checks both."""
    meta = read_tensor_metadata(path)
    return float(meta.get("temperature", "1.0")), float(meta.get("unsure_below", UNSURE_BELOW))


def load_model(path: Path) -> tuple[nn.Module, ModelSpec, str, str]:
    """Rebuild the saved architecture and load its weights: (model, spec, loss, output)."""
    arrays, meta = load_tensors(path)
    weights = {name: torch.from_numpy(array) for name, array in arrays.items()}
    try:
        spec = ModelSpec.from_json(meta["spec"])
        loss, output = meta["loss"], meta["output"]
        if loss not in LOSSES.get(output, {}):
            raise ValueError(f"loss {loss!r} / output {output!r} is no pair of {list(LOSSES)}")
        if not 0 < float(meta.get("temperature", "1.0")) < math.inf:
            raise ValueError(f"temperature {meta['temperature']!r} is no positive number")
        if not 0 <= float(meta.get("unsure_below", UNSURE_BELOW)) < 1:
            raise ValueError(f"unsure_below {meta['unsure_below']!r} is not in [0, 1)")
        _check_weights(path, spec, weights)
    except ValidationError as err:
        raise PipelineError(
            f"{path}: bad model description in its metadata ({one_line(err)}); "
            "rerun the train stage"
        ) from err
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise PipelineError(
            f"{path}: no usable model description in its metadata ({err}); rerun the train stage"
        ) from err
    model = build_model(spec)
    model.load_state_dict(weights, strict=True)  # names, shapes and dtypes checked above
    return model, spec, loss, output
