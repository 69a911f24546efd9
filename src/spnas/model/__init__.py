"""What a network is, apart from torch: the search space, architectures and their strings, model size."""
