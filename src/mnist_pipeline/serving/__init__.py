"""The model outside the pipeline: image preprocessing, onnxruntime inference, the HTTP app.
No stage imports it (editing it reruns nothing) and it imports no torch (it starts quickly)."""
