"""The latency-aware single-path search: one training run of one supernet."""
