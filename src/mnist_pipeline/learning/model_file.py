"""A trained model's files: safetensors weights with what rebuilds the model as metadata (so
evaluate needs no ``params.yaml``), and the same model as ONNX, checked against torch."""

from __future__ import annotations

import copy
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError, one_line
from mnist_pipeline.data.tensors import load_tensors, read_tensor_metadata, save_tensors
from mnist_pipeline.learning.losses import LOSSES, OUTPUTS
from mnist_pipeline.learning.models import ModelSpec, build_model, predict_logits
from mnist_pipeline.learning.params import UNSURE_BELOW

TOLERANCE = 1e-5  # ONNX against torch: absolute, on each probability
OPSET = 17


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
        with torch.device("meta"):  # nothing allocated: the file's tensors become the weights
            model = build_model(spec)
    except ValidationError as err:
        raise PipelineError(
            f"{path}: bad model description in its metadata ({one_line(err)}); "
            "rerun the train stage"
        ) from err
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise PipelineError(
            f"{path}: no usable model description in its metadata ({err}); rerun the train stage"
        ) from err
    try:
        for name, tensor in model.state_dict().items():  # assign keeps the file's dtype
            if name in weights and weights[name].dtype != tensor.dtype:
                raise RuntimeError(f"{name} is {weights[name].dtype}, not {tensor.dtype}")
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as err:  # torch's first line names only the module class
        why = " ".join((str(err).partition(":\n")[2] or str(err)).split())
        raise PipelineError(
            f"{path}: weights do not fit the {spec.name} architecture in its metadata "
            f"({why[:300]}); rerun the train stage"
        ) from err
    return model, spec, loss, output


class WithProbabilities(nn.Module):
    """``images -> (logits, probabilities)``: the classifier and its calibrated output."""

    def __init__(self, model: nn.Module, output: str, temperature: float = 1.0) -> None:
        super().__init__()
        self.model, self.output, self.temperature = model, output, temperature

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(images)
        scaled = logits if self.temperature == 1.0 else logits / self.temperature  # no node at 1
        return logits, OUTPUTS[self.output](scaled)


def to_onnx(
    model: nn.Module,
    spec: ModelSpec,
    output: str,
    classes: tuple[str, ...],
    dataset: str,
    temperature: float = 1.0,
    unsure_below: float = UNSURE_BELOW,
) -> bytes:
    """``model`` as ONNX bytes (``images [N, 784]`` -> ``logits``, calibrated ``probabilities``)
    with what a server needs as metadata; the legacy exporter, whose bytes repeat, without
    constant folding (folding a BatchNorm goes through ``torch.sqrt``, whose last bit differs
    between CPUs)."""
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(
            WithProbabilities(copy.deepcopy(model).cpu().eval(), output, temperature),
            (torch.zeros(1, spec.in_features),),
            buffer,
            dynamo=False,
            do_constant_folding=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["logits", "probabilities"],
            dynamic_axes={name: {0: "batch"} for name in ("images", "logits", "probabilities")},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {"classes": json.dumps(list(classes)), "dataset": dataset, "model": spec.name}
    metadata |= {"spec": spec.to_json(), "output": output}
    if temperature != 1.0:
        metadata["temperature"] = str(temperature)
    if unsure_below != UNSURE_BELOW:
        metadata["unsure_below"] = str(unsure_below)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def check_onnx(
    onnx_model: bytes,
    model: nn.Module,
    output: str,
    images: np.ndarray,
    where: Path | str,
    temperature: float = 1.0,
) -> str:
    """The line saying onnxruntime agrees with torch on ``images`` to ``TOLERANCE``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    logits = predict_logits(copy.deepcopy(model).cpu(), torch.from_numpy(images))
    want = OUTPUTS[output](logits / temperature).numpy()
    got_logits, got = session.run(None, {"images": images.astype(np.float32)})
    diff = float(np.abs(got - want).max()) if len(images) else 0.0
    differ = int((got_logits.argmax(1) != logits.numpy().argmax(1)).sum())
    if not diff <= TOLERANCE or differ:
        raise PipelineError(
            f"{where}: the ONNX export disagrees with torch on {len(images)} test images "
            f"(max probability difference {diff:.2e}, tolerance {TOLERANCE:.0e}; "
            f"{differ} predicted classes differ); report this with the params used"
        )
    return (
        f"{where} matches torch on {len(images)} test images (max probability difference "
        f"{diff:.1e}, same class for every image)"
    )
