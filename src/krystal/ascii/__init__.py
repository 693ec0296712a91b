"""Text-art rendering (core), the terminal view, and the ascii_renderer node."""
