"""What every search and training job runs on: config and checks, the run directory and checkpoints, the
step loop, replicas, divergence checks, device and precision, optimisers and schedules, evaluation."""
