"""The exported model (``models/model.onnx``, written by the train stage) through onnxruntime.

No torch. The ONNX file carries its class names, dataset, architecture and output function
(``learning.export``), so no other file is read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import IMAGE_SIDE
from mnist_pipeline.reporting.text import printable

DEFAULT_MODEL = Path("models/model.onnx")


@dataclass(frozen=True)
class Classifier:
    """An onnxruntime session over an exported model, with the model's description."""

    session: Any  # onnxruntime.InferenceSession (thread-safe: the HTTP app shares one)
    classes: tuple[str, ...]
    dataset: str
    model: str
    output: str

    def classify(self, images: Sequence[str], inputs: np.ndarray) -> list[dict[str, Any]]:
        """Answers for ``inputs`` ``[N, 28, 28]``: ``{image, predicted, probabilities}`` each
        (class name -> probability, in class order, 6 decimals); the predicted class is the
        argmax of the logits, as in the evaluate stage."""
        flat = np.ascontiguousarray(
            inputs.reshape(len(inputs), IMAGE_SIDE * IMAGE_SIDE), dtype=np.float32
        )
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
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != ["images"] or [o.name for o in outputs] != [
        "logits",
        "probabilities",
    ]:
        raise PipelineError(
            f"{name}: not a model exported by the train stage (inputs "
            f"{[i.name for i in inputs]}, outputs {[o.name for o in outputs]}); rerun it"
        )
    features = inputs[0].shape[-1]
    if features != IMAGE_SIDE * IMAGE_SIDE:
        raise PipelineError(
            f"{name}: the model takes {features} input features, not {IMAGE_SIDE}×{IMAGE_SIDE} = "
            f"{IMAGE_SIDE * IMAGE_SIDE}: it was trained on another kind of data; use a model this "
            "pipeline trained (dvc repro) or pass --model"
        )
    num_classes = outputs[0].shape[-1]
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
        session,
        classes,
        dataset=meta.get("dataset", "unknown"),
        model=meta.get("model", "unknown"),
        output=meta.get("output", "softmax"),
    )
