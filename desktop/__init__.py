"""Latent Studio: an offline text-to-image desktop app."""

__version__ = "0.1.0"
APP_NAME = "Latent Studio"
