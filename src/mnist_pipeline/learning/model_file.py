"""A trained model's files: safetensors weights with what rebuilds the model as metadata (so
evaluate needs no ``params.yaml``), and the same model as ONNX, checked against torch."""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError, one_line
from mnist_pipeline.data.tensors import load_tensors, save_tensors
from mnist_pipeline.learning.losses import LOSSES, Head
from mnist_pipeline.learning.models import ModelSpec, build_model, predict_logits

TOLERANCE = 1e-5  # ONNX against torch: absolute, on each probability
OPSET = 17


def save_model(
    model: nn.Module, spec: ModelSpec, path: Path, loss: str, head: Head, classes: tuple[str, ...]
) -> None:
    metadata = {"spec": spec.to_json(), "loss": loss, **head.metadata()}
    if classes:
        metadata["classes"] = json.dumps(list(classes))
    save_tensors(model.state_dict(), path, metadata=metadata)


def load_model(path: Path) -> tuple[nn.Module, ModelSpec, str, Head]:
    """Rebuild the saved architecture and load its weights: (model, spec, loss, head)."""
    arrays, meta = load_tensors(path)
    weights = {name: torch.from_numpy(array) for name, array in arrays.items()}
    try:
        spec, loss, head = ModelSpec.from_json(meta["spec"]), meta["loss"], Head.from_metadata(meta)
        if loss not in LOSSES[head.output]:
            raise ValueError(f"loss {loss!r} / output {head.output!r} is no pair of LOSSES")
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
    return model, spec, loss, head


class WithProbabilities(nn.Module):
    """``images -> (logits, probabilities)``: the classifier and its calibrated output."""

    def __init__(self, model: nn.Module, head: Head) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(images)
        return logits, self.head.probabilities(logits)


def to_onnx(
    model: nn.Module, spec: ModelSpec, head: Head, classes: tuple[str, ...], dataset: str
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
            WithProbabilities(copy.deepcopy(model).cpu().eval(), head),
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
    for key, value in (metadata | {"spec": spec.to_json(), **head.metadata()}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def check_onnx(
    onnx_model: bytes, model: nn.Module, head: Head, images: np.ndarray, where: Path | str
) -> str:
    """The line saying onnxruntime agrees with torch on ``images`` to ``TOLERANCE``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    logits = predict_logits(copy.deepcopy(model).cpu(), torch.from_numpy(images))
    want = head.probabilities(logits).numpy()
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
