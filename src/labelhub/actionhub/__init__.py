"""The ActionHub API, served at the root (``/labels``, ``/assets``, ...)."""
