"""`krystal run --isolate`: every node its own process, restarted when it dies (docs/architecture.md)."""
