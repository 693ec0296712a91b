"""Reasoning: rules, frame-time prediction, TD policy and the decision log behind StyleDecision."""
