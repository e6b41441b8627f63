"""iotman: a self-hostable IoT event platform built on one append-only log per workspace."""

__all__ = ["__version__"]

__version__ = "0.1.0"
