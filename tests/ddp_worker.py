"""Run ``spnas`` under torchrun with every rank's final weights kept, for tests/test_replicas.py.

Only rank 0 writes a run's files; to show that the ranks agree, this wrapper also saves each rank's
network parameters (weights and thresholds; BatchNorm statistics are per replica) at every checkpoint
as ``rank{R}.pt`` beside the run directory. Usage: ``torchrun ... tests/ddp_worker.py spnas-args...``
"""

import os
import sys
from pathlib import Path

import torch

from spnas.cli.main import main
from spnas.jobs.job import Job

checkpoint = Job.checkpoint


def checkpoint_and_keep_parameters(self, step, parts, kind, guard, wall_before):
    checkpoint(self, step, parts, kind, guard, wall_before)
    params = {name: p.detach().clone() for name, p in parts["model"].named_parameters()}
    torch.save({"step": step, "params": params}, Path(str(self.run_dir) + f".rank{os.environ['RANK']}.pt"))


Job.checkpoint = checkpoint_and_keep_parameters
sys.exit(main(sys.argv[1:]))
