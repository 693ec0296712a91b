"""Kasmina: morphogenetic models that start small and germinate seeds where they plateau."""
