"""mnistlab: train, compare and use classifiers on MNIST-format data."""

__version__ = "0.1.0"
