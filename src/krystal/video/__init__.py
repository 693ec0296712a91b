"""Video sources: camera, file, stream, test pattern (core) and the video_source node."""
