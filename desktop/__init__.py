"""Latent Studio: an offline text-to-image desktop app."""

import os

# transformers >= 5.25 swaps layers for kernels fetched from the Hub on every model it loads unless told not
# to; an offline app runs the weights on disk, on every path (engine, demo training, benchmark). Set here,
# before any of them imports transformers; setting the variable yourself still opts in.
os.environ.setdefault("USE_HUB_KERNELS", "NO")

__version__ = "0.1.0"
APP_NAME = "Latent Studio"
