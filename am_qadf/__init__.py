"""AM-QADF Live: real-time monitoring for metal additive manufacturing."""

__version__ = "0.1.0"
