"""Datasets behind one interface: in-memory tensors for small data, lazy image folders for large."""
