"""clientswarm: spawn many clients that load-test an AI inference service and measure every interaction."""

__version__ = "0.1.0"
