"""clientswarm: spawn many clients that load-test an AI inference service, measure everything."""

__version__ = "0.1.0"
