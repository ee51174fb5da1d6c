"""openclaw-twisted: an OpenClaw-compatible AI gateway on Twisted."""

__version__ = "0.1.0"

__all__ = ["__version__"]
