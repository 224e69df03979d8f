"""labelhub: one server for the ActionHub labels API and the HAR metadata API."""

__version__ = "0.1.0"
