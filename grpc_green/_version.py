"""Version of the grpc_green package."""

__version__ = "0.1.0"
