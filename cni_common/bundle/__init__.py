"""Packaging of the suite: the single-file packer and its launcher, the runner, and the build's helpers."""
