"""The Harness Artifact Registry metadata API, served under ``/har/api/v1``."""
