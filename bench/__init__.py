"""Benchmarks: our single-file plugins against the Go reference plugins, measured in the same run.

`python -m bench.run` is the entry point (see bench/README.md). Modules: `stats` (medians, ratios),
`table` (the one side-by-side table and its goals), `machine` (what it ran on), `measure` (wall + CPU of an
exec via wait4), `lab` (throwaway namespaces and temp dirs), `cases` (the measurements), `footprint` (sizes).
"""
