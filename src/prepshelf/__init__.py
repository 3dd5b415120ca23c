"""prepshelf: a self-hosted file-processing backend for AI retrieval."""

__version__ = "0.1.0"
