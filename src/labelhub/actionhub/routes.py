"""ActionHub routes (labels, assets, events, recommendations) at the server root."""

from fastapi import APIRouter

router = APIRouter(tags=["ActionHub"])
