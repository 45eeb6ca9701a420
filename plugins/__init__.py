"""The CNI plugins of the suite, one module per CNI type."""
