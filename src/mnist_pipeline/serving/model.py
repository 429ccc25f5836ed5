"""The exported model (``models/model.onnx``) through onnxruntime, without torch; the file
carries its class names, dataset and architecture (``learning.export``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.errors import PipelineError, printable
from mnist_pipeline.data.splits import IMAGE_SIDE

DEFAULT_MODEL = Path("models/model.onnx")


@dataclass(frozen=True)
class Classifier:
    session: Any  # onnxruntime.InferenceSession (thread-safe: the HTTP app shares one)
    classes: tuple[str, ...]
    dataset: str
    model: str

    def classify(self, images: Sequence[str], inputs: np.ndarray) -> list[dict[str, Any]]:
        """``{image, predicted, probabilities}`` for each of ``inputs`` ``[N, 28, 28]``
        (class name -> probability, 6 decimals); the argmax of the logits, as evaluate's."""
        pixels = inputs.reshape(len(inputs), IMAGE_SIDE * IMAGE_SIDE)
        flat = np.ascontiguousarray(pixels, dtype=np.float32)
        logits, probs = self.session.run(None, {"images": flat})
        return [
            {
                "image": image,
                "predicted": self.classes[int(row_logits.argmax())],
                "probabilities": {
                    name: round(float(p), 6) for name, p in zip(self.classes, row, strict=True)
                },
            }
            for image, row_logits, row in zip(images, logits, probs, strict=True)
        ]


def load_classifier(path: Path) -> Classifier:
    """The ONNX model at ``path``, checked to take 28×28 images and to name its classes."""
    import onnxruntime

    name = printable(path)
    if not Path(path).is_file():
        raise PipelineError(
            f"{name}: no such model file; run the pipeline (dvc repro) or pass --model"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one image at a time: threads cost more than they save
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        reason = printable(str(err).strip().splitlines()[0] if str(err).strip() else err)
        raise PipelineError(
            f"{name}: not an ONNX model ({reason[:200]}); use models/model.onnx from the "
            "train stage"
        ) from err
    meta = session.get_modelmeta().custom_metadata_map
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != ["images"] or outputs != ["logits", "probabilities"]:
        raise PipelineError(
            f"{name}: not a model exported by the train stage (inputs {inputs}, outputs "
            f"{outputs}); rerun it"
        )
    features, pixels = session.get_inputs()[0].shape[-1], IMAGE_SIDE * IMAGE_SIDE
    if features != pixels:
        raise PipelineError(
            f"{name}: the model takes {features} input features, not {IMAGE_SIDE}×{IMAGE_SIDE} = "
            f"{pixels}: it was trained on another kind of data; use a model this pipeline "
            "trained (dvc repro) or pass --model"
        )
    num_classes = session.get_outputs()[0].shape[-1]
    try:
        classes = tuple(str(c) for c in json.loads(meta["classes"]))
    except (KeyError, TypeError, ValueError) as err:
        raise PipelineError(f"{name}: no readable class names in its metadata ({err})") from err
    if len(classes) != num_classes:
        raise PipelineError(
            f"{name}: {len(classes)} class names for {num_classes} outputs in its metadata; "
            "rerun the train stage"
        )
    return Classifier(
        session, classes, meta.get("dataset", "unknown"), meta.get("model", "unknown")
    )
