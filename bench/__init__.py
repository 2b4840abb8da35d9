"""Benchmarks: measurements printed as a table and a JSON line, each against a baseline measured in
the same run. Never timed assertions; see bench/README.md."""
