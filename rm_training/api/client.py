"""A small client for scripts that call the scoring API.

    from rm_training.api import RewardClient
    rc = RewardClient("http://127.0.0.1:8000", api_key=None)
    rc.score([{"prompt": "Hi", "response": "Hello!"}])[0]["reward"]
"""

from __future__ import annotations

import os

import httpx


class APIError(RuntimeError):
    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class RewardClient:
    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 120.0, chunk: int = 256):
        key = api_key if api_key is not None else os.environ.get("HELPSTEER_API_KEY", "").split(",")[0].strip()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.chunk = chunk  # items per request (the server's default limit is 256)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _post(self, path: str, body: dict) -> dict:
        r = self.http.post(path, json=body)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise APIError(r.status_code, str(detail))
        return r.json()

    def _chunked(self, path: str, items: list[dict], key: str, per_item: int = 1) -> list[dict]:
        out, step = [], max(1, self.chunk // per_item)
        for i in range(0, len(items), step):
            out.extend(self._post(path, {"items": items[i : i + step]})[key])
        return out

    def healthz(self) -> dict:
        return self.http.get("/healthz").json()

    def models(self) -> list[dict]:
        r = self.http.get("/v1/models")
        r.raise_for_status()
        return r.json()["data"]

    def score(self, items: list[dict]) -> list[dict]:
        """items: {prompt | messages, response[, principle]} -> {reward, attributes, uncertainty, truncated}."""
        return self._chunked("/v1/score", items, "scores")

    def rewards(self, items: list[dict]) -> list[float]:
        return [s["reward"] for s in self.score(items)]

    def compare(self, items: list[dict]) -> list[dict]:
        """items: {prompt | messages, response_a, response_b} -> {p_a_better, reward_a, reward_b, truncated}."""
        return self._chunked("/v1/compare", items, "results", per_item=2)

    def principles(self, items: list[dict]) -> list[dict]:
        """items: {prompt | messages, response, principles: [str]} -> per item {principles: [{principle, probability, logit}]}."""
        return self._post("/v1/principles", {"items": items})["results"]

    def get_reward(self, queries: list[str], prompts: list[str] | None = None) -> list[float]:
        body = {"query": queries}
        if prompts is not None:
            body["prompts"] = prompts
        return self._post("/get_reward", body)["rewards"]
