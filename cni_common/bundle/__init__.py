"""Packaging of the suite: the frozen program's entry script, the single-file packer and its launcher."""
