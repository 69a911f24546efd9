"""Runtime model: per-layer latency tables (LUTs), targets that measure them, and prediction."""
