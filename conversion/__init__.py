"""Turning trained adapters into the GGUF file the service serves."""
