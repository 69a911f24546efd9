"""spnas: Single-Path NAS in PyTorch."""

__version__ = "0.1.0"
