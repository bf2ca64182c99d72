"""The benchmark suite: `make bench` (docs/performance.md)."""
