"""HAR metadata routes, under ``/har/api/v1``."""

from fastapi import APIRouter

HAR_PREFIX = "/har/api/v1"

router = APIRouter(prefix=HAR_PREFIX, tags=["HAR"])
