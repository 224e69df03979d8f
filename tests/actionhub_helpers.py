"""Small helpers for the ActionHub HTTP tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

BAD_KEY = {"detail": "Could not validate API KEY"}


@dataclass
class ActionHub:
    """An HTTP client bound to one program and one key (both can be overridden per call)."""

    http: httpx.AsyncClient
    key: str
    program: str
    make_key: Callable[..., str]

    def headers(
        self, key: str | None = None, program: str | None = None, **extra: str
    ) -> dict[str, str]:
        h = {"actionhub-key": key or self.key, "program-id": program or self.program}
        h.update(extra)
        return h

    async def put_labels(self, labels: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        return await self.http.put("/labels", json={"labels": labels}, headers=self.headers(**kw))

    async def labels(self, **params: Any) -> dict[str, Any]:
        r = await self.http.get("/labels", params=params, headers=self.headers())
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def all_labels(self) -> dict[str, float]:
        found: dict[str, float] = {}
        page = 1
        while True:
            body = await self.labels(page=page, size=100)
            found.update({i["label"]: i["weight"] for i in body["items"]})
            if not body["items"]:
                return found
            page += 1

    async def post_assets(self, assets: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        return await self.http.post("/assets", json={"assets": assets}, headers=self.headers(**kw))

    async def assets(self, **params: Any) -> dict[str, Any]:
        r = await self.http.get("/assets", params=params, headers=self.headers())
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def raw(self, method: str, path: str, content: bytes, **kw: Any) -> httpx.Response:
        headers = self.headers(**kw)
        headers["content-type"] = "application/json"
        return await self.http.request(method, path, content=content, headers=headers)
