"""Learning pipeline: harvest the graph's own operation, train and export policies (docs/learning.md).

Only the training modules (policy_model.py) import torch; harvest, features, sim and the runtime
that the reasoning node loads (policy_runtime.py) run on NumPy (and onnxruntime).
"""
