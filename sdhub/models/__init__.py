"""What the tensors mean: components, architecture and kind detection, key layouts."""
