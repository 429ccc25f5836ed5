"""The exported model (``models/model.onnx``, with its class names) run by onnxruntime. Its
probabilities are calibrated (``learning.losses.fit_temperature``); below its ``unsure_below`` top
probability it answers no class, only its guesses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import IMAGE_SIDE
from mnist_pipeline.learning.losses import UNSURE_BELOW  # a model file without the key

DEFAULT_MODEL = Path("models/model.onnx")
PIXELS = IMAGE_SIDE * IMAGE_SIDE
TOP = 3  # classes answered with their probabilities


@dataclass(frozen=True)
class Classifier:
    session: Any  # onnxruntime.InferenceSession (thread-safe: the HTTP app shares one)
    classes: tuple[str, ...]
    dataset: str
    model: str
    unsure_below: float = UNSURE_BELOW  # a lower top probability: ``predicted`` is None

    def classify(self, images: Sequence[str], inputs: np.ndarray) -> list[dict[str, Any]]:
        """``{image, predicted, top, probabilities}`` for each of ``inputs`` ``[N, 28, 28]``
        (``predicted`` None when unsure); scores of the wrong shape or not finite are an error."""
        flat = np.ascontiguousarray(inputs.reshape(len(inputs), PIXELS), dtype=np.float32)
        logits, probs = self.session.run(["logits", "probabilities"], {"images": flat})
        if not logits.shape == probs.shape == (len(inputs), len(self.classes)):
            raise PipelineError(
                f"the model answers scores of shape {probs.shape} for {len(inputs)} images and "
                f"{len(self.classes)} class names"
            )
        if not (np.isfinite(logits).all() and np.isfinite(probs).all()):
            raise PipelineError("the model's scores are not finite numbers (NaN or infinity)")
        answers = []
        for image, best, row in zip(images, logits.argmax(axis=1), probs, strict=True):
            scores = {c: round(float(p), 6) for c, p in zip(self.classes, row, strict=True)}
            ranked = sorted(scores, key=scores.__getitem__, reverse=True)[:TOP]  # stable on ties
            top = [{"class": c, "probability": scores[c]} for c in ranked]
            predicted = self.classes[best] if row[best] >= self.unsure_below else None
            answers.append(dict(image=image, predicted=predicted, top=top, probabilities=scores))
        return answers


def load_classifier(path: Path) -> Classifier:
    """The ONNX model at ``path``, checked: it takes 28×28 images, names its classes, and
    answers a known input (all 0, all 1) with finite scores of the right shape."""
    import onnxruntime

    if not Path(path).is_file():
        raise PipelineError(f"{path}: no such model file; run `dvc repro` or pass --model")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one image at a time: threads cost more than they save
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        reason = str(err).strip().partition("\n")[0][:200]
        raise PipelineError(
            f"{path}: not an ONNX model ({reason}); use models/model.onnx from the train stage"
        ) from err
    if (features := [i.shape[-1] for i in session.get_inputs() if i.shape]) != [PIXELS]:
        raise PipelineError(
            f"{path}: the model takes {', '.join(map(str, features))} input features, not "
            f"{IMAGE_SIDE}×{IMAGE_SIDE} = {PIXELS}: it was trained on another kind of data; use a "
            "model this pipeline trained (dvc repro) or pass --model"
        )
    meta = session.get_modelmeta().custom_metadata_map
    try:
        classes = tuple(str(c) for c in json.loads(meta["classes"]))
        unsure_below = float(meta.get("unsure_below", UNSURE_BELOW))
        if not 0 <= unsure_below < 1:
            raise ValueError(f"unsure_below {unsure_below} is not in [0, 1)")
    except (KeyError, TypeError, ValueError) as err:
        raise PipelineError(
            f"{path}: no readable class names or unsure_below in its metadata ({err})"
        ) from err
    described = (meta.get("dataset", "?"), meta.get("model", "?"), unsure_below)
    classifier = Classifier(session, classes, *described)
    try:
        classifier.classify(["0", "1"], np.stack([np.zeros(PIXELS), np.ones(PIXELS)]))
    except Exception as err:  # inputs, outputs or scores not as the train stage exports them
        reason = str(err).strip().partition("\n")[0][:200]
        raise PipelineError(f"{path}: {reason}; rerun the train stage or pass --model") from err
    return classifier
