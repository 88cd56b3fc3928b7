"""The client of an express process's control API, as the node's migration orchestrator uses it.

    async with ExpressClient(url, token) as express:
        job = await express.create(JobSpec(source=..., destination=..., workers=4))
        async for view in express.events(job.id):   # on every change, at least every second
            ...
        await express.set_rate(job.id, 50 << 20)
        await express.cancel(job.id)

Only JSON crosses this connection: the state bytes go from the source's storage endpoint through
the express process to the destination's. Refusals raise `ExpressRefused` (status, code),
connection failures `ExpressUnavailable`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from connectors.express.errors import ExpressRefused, ExpressUnavailable
from connectors.express.jobs import JobSpec, JobView
from connectors.session import LazySession

API = "/express/v1"
MAX_EVENT_BYTES = 1 << 20


class ExpressClient:
    """Calls to one express process (`url` as it printed it, bearer `token`)."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = LazySession(
            lambda: aiohttp.ClientSession(headers=self._headers),
            lambda: ExpressUnavailable(f"express at {self.url}: the client was closed"),
        )

    async def __aenter__(self) -> ExpressClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; a call still in flight, or made later, gets ExpressUnavailable."""
        await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        return self._session.get()

    def _job_url(self, job_id: str, tail: str = "") -> str:
        return f"{self.url}{API}/jobs/{quote(job_id, safe='')}{tail}"

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        try:
            async with self._http().request(method, url, json=body, timeout=self._timeout) as response:
                answer = await response.json(content_type=None)
                if response.status >= 400:
                    raise _refused(response.status, answer)
                return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ExpressUnavailable(f"express at {self.url}: {type(exc).__name__}: {exc}") from None

    async def health(self) -> dict[str, Any]:
        """The express's health: jobs and the relay buffer budget in use."""
        answer: dict[str, Any] = await self._call("GET", f"{self.url}{API}/health")
        return answer

    async def create(self, spec: JobSpec) -> JobView:
        """Create a job (the same `id` and request again returns the existing job)."""
        body = spec.model_dump(mode="json", exclude_none=True)
        return JobView.model_validate(await self._call("POST", f"{self.url}{API}/jobs", body))

    async def job(self, job_id: str) -> JobView:
        """The job's state and progress."""
        return JobView.model_validate(await self._call("GET", self._job_url(job_id)))

    async def jobs(self) -> list[JobView]:
        """Every job the express keeps, oldest first."""
        answer = await self._call("GET", f"{self.url}{API}/jobs")
        return [JobView.model_validate(item) for item in answer["jobs"]]

    async def set_rate(self, job_id: str, rate_cap_bytes_per_s: int) -> JobView:
        """Change the job's bandwidth cap while it runs (0: no cap)."""
        body = {"rate_cap_bytes_per_s": rate_cap_bytes_per_s}
        return JobView.model_validate(await self._call("PATCH", self._job_url(job_id), body))

    async def cancel(self, job_id: str) -> JobView:
        """Cancel the job (its files at the destination are removed); harmless if already cancelled."""
        return JobView.model_validate(await self._call("POST", self._job_url(job_id, "/cancel")))

    async def resume(self, job_id: str) -> JobView:
        """Run a stalled job again from what the destination holds."""
        return JobView.model_validate(await self._call("POST", self._job_url(job_id, "/resume")))

    async def events(self, job_id: str) -> AsyncIterator[JobView]:
        """The job's progress events until it finishes (Server-Sent Events)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total, sock_read=10)
        try:
            async with self._http().get(self._job_url(job_id, "/events"), timeout=timeout) as response:
                if response.status >= 400:
                    raise _refused(response.status, await response.json(content_type=None))
                data: list[str] = []
                while line := await response.content.readline():
                    if len(line) > MAX_EVENT_BYTES:
                        raise ExpressUnavailable("an event line is longer than allowed")
                    text = line.decode().rstrip("\r\n")
                    if text.startswith("data:"):
                        data.append(text[5:].lstrip())
                    elif not text and data:
                        yield JobView.model_validate(json.loads("\n".join(data)))
                        data = []
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ExpressUnavailable(f"express at {self.url}: {type(exc).__name__}: {exc}") from None

    async def wait(self, job_id: str, timeout_s: float) -> JobView:
        """Follow the job's events until it finishes; TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        async with asyncio.timeout(timeout_s):
            while True:
                async for view in self.events(job_id):
                    if view.finished:
                        return view
                view = await self.job(job_id)  # the stream ended early (an express restart): look again
                if view.finished:
                    return view
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _refused(status: int, body: Any) -> ExpressRefused:
    if isinstance(body, dict):
        return ExpressRefused(status, str(body.get("error", f"http_{status}")), str(body.get("message", "")))
    return ExpressRefused(status, f"http_{status}", "")
