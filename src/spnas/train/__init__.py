"""Training a derived architecture from scratch."""
