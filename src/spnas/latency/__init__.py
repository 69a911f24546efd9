"""Runtime model: per-layer latency tables (LUTs), the backends that measure them, and prediction."""
