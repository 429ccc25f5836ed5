"""The trained model as ONNX (``images`` ``[N, 784]`` -> ``logits``, ``probabilities``), its
metadata what a server needs without the pipeline, checked against torch before it is written.
The legacy TorchScript exporter writes the same bytes for the same weights."""

from __future__ import annotations

import copy
import io
import json
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.learning.losses import OUTPUTS
from mnist_pipeline.learning.models import ModelSpec, predict_logits
from mnist_pipeline.learning.params import UNSURE_BELOW

TOLERANCE = 1e-5  # absolute, on each probability
OPSET = 17


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
    """The serialized ONNX model of ``model`` (on the CPU, in eval mode), metadata included;
    ``probabilities`` divide the logits by ``temperature`` first (``learning.calibration``);
    a top probability below ``unsure_below`` answers "unsure" (``serving.model``)."""
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(
            WithProbabilities(copy.deepcopy(model).cpu().eval(), output, temperature),
            (torch.zeros(1, spec.in_features),),
            buffer,
            dynamo=False,
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
    where: str,
    temperature: float = 1.0,
) -> tuple[float, int]:
    """onnxruntime against torch on ``images`` ``[N, 784]``: (max |Δp|, images compared);
    refused when a probability differs by more than ``TOLERANCE`` or a predicted class differs."""
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
    return diff, len(images)
