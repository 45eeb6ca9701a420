"""Shared library of the CNI plugin suite.

Importing this package has no side effects and pulls in nothing heavy: every plugin imports it on the VERSION
path, which must answer in a few milliseconds.
"""

__version__ = "0.1.0"
