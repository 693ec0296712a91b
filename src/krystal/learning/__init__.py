"""The learning pipeline: harvest, training and growth of models (the only package that imports torch)."""
