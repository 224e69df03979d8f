"""Client threads that write through live labelhub servers of both APIs and record every answer.

Each ActionHub writer puts labels no other request names (``w<n>-<seq>-<i>``), so an answered
write must be found exactly as sent; each HAR writer replaces the labels of its own artifact with
``["seq-<seq>", "w<n>"]``, so the artifact must end at the last answered sequence number or a later
one (a later write may have committed without being answered).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

PROGRAM = "p"
SPACE = "acct"
REGISTRY = "acct%2Freg"
HAR = "/har/api/v1"


def setup(url: str, admin: str, har_writers: int) -> None:
    """The program, the registry and one artifact per HAR writer."""
    h = {"x-api-key": admin}
    r = httpx.post(f"{url}/admin/programs", json={"program_id": PROGRAM}, headers=h)
    assert r.status_code == 201, r.text
    body = {"identifier": "reg", "packageType": "GENERIC", "config": {"type": "VIRTUAL"}}
    r = httpx.post(f"{url}{HAR}/registry", params={"space_ref": SPACE}, json=body, headers=h)
    assert r.status_code == 201, r.text
    for n in range(har_writers):
        r = httpx.post(
            f"{url}{HAR}/registry/{REGISTRY}/artifacts", json={"name": f"art{n}"}, headers=h
        )
        assert r.status_code == 201, r.text


@dataclass
class Answer:
    api: str
    started: float
    seconds: float
    status: int | None  # None: no answer (connection refused, reset, timeout)
    body: Any = None


@dataclass
class Load:
    """Writers on ``urls`` (round robin per request) until ``stop()``."""

    urls: list[str]
    admin: str
    ah_writers: int = 4
    har_writers: int = 4
    labels_per_put: int = 5
    timeout: float = 30
    answers: list[Answer] = field(default_factory=list)
    acked_labels: dict[str, float] = field(default_factory=dict)
    acked_seq: dict[str, int] = field(default_factory=dict)  # artifact -> last answered seq
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.ah_writers):
            self._threads.append(threading.Thread(target=self._actionhub, args=(n,), daemon=True))
        for n in range(self.har_writers):
            self._threads.append(threading.Thread(target=self._har, args=(n,), daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)

    def statuses(self, api: str | None = None, since: float = 0.0) -> Counter[int | None]:
        with self._lock:
            return Counter(
                a.status for a in self.answers if (api in (None, a.api)) and a.started >= since
            )

    def first_success_after(self, moment: float) -> dict[str, float]:
        """Per API, seconds from ``moment`` until the first 200 answered after it."""
        found: dict[str, float] = {}
        with self._lock:
            for a in self.answers:
                ended = a.started + a.seconds
                if a.status == 200 and ended >= moment and a.api not in found:
                    found[a.api] = ended - moment
        return found

    def _send(
        self, http: httpx.Client, api: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            r = http.request(method, url, **kw)
        except httpx.HTTPError:
            r = None
        answer = Answer(api, started, time.monotonic() - started, r and r.status_code)
        if r is not None and r.headers.get("content-type", "").startswith("application/json"):
            answer.body = r.json()
        with self._lock:
            self.answers.append(answer)
        if r is None:
            time.sleep(0.05)  # the server is gone or restarting; do not spin
        return r

    def _actionhub(self, n: int) -> None:
        headers = {"actionhub-key": self.admin, "program-id": PROGRAM}
        seq = 0
        with httpx.Client(headers=headers, timeout=self.timeout) as http:
            while not self._stop.is_set():
                seq += 1
                url = self.urls[seq % len(self.urls)]
                labels = {
                    f"w{n}-{seq}-{i}": seq + i / 10 + n / 1000 for i in range(self.labels_per_put)
                }
                body = {"labels": [{"label": k, "weight": v} for k, v in labels.items()]}
                r = self._send(http, "actionhub", "PUT", f"{url}/labels", json=body)
                if r is not None and r.status_code == 200:
                    with self._lock:
                        self.acked_labels.update(labels)

    def _har(self, n: int) -> None:
        headers = {"x-api-key": self.admin}
        seq = 0
        with httpx.Client(headers=headers, timeout=self.timeout) as http:
            while not self._stop.is_set():
                seq += 1
                url = self.urls[seq % len(self.urls)]
                path = f"{url}{HAR}/registry/{REGISTRY}/artifact/art{n}/labels"
                body = {"labels": [f"seq-{seq:08d}", f"w{n}"]}
                r = self._send(http, "har", "PUT", path, json=body)
                if r is not None and r.status_code == 200:
                    with self._lock:
                        self.acked_seq[f"art{n}"] = seq


def stored_labels(url: str, admin: str) -> dict[str, float]:
    headers = {"actionhub-key": admin, "program-id": PROGRAM}
    found: dict[str, float] = {}
    page = 1
    with httpx.Client(headers=headers, timeout=30) as http:
        while True:
            r = http.get(f"{url}/labels", params={"page": page, "size": 100})
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            if not items:
                return found
            found.update({i["label"]: i["weight"] for i in items})
            page += 1


def stored_seq(url: str, admin: str, artifact: str) -> int:
    r = httpx.get(
        f"{url}{HAR}/registry/{REGISTRY}/artifact/{artifact}/summary",
        headers={"x-api-key": admin},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    seqs = [int(label[4:]) for label in r.json()["data"]["labels"] if label.startswith("seq-")]
    return max(seqs, default=0)
