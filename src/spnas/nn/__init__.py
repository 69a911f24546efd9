"""Network building blocks: the superkernel, the MBConv block and the network built from a space."""
