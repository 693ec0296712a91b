"""Learning pipeline: harvest the graph's own operation, train and export policies (docs/learning.md),
grow models (Kasmina, docs/kasmina.md) and retrain the glyph matcher.

The only package that imports torch, and only in its training modules; harvest, features, sim and
the runtime the reasoning node loads (policy_runtime.py) run on NumPy (and onnxruntime).
"""
