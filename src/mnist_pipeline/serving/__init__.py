"""The model outside the pipeline: image preprocessing, onnxruntime inference, the HTTP app.

Nothing in the DVC pipeline imports this package, so editing it reruns no stage; it
imports no torch, so a command that answers with the model starts quickly.
"""
