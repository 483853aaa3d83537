"""jitprov benchmarks: `make bench` (`python -m bench`), `make bench-quick`."""
