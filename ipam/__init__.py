"""IPAM plugins of the suite (host-local)."""
