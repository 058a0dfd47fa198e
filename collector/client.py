"""Where readers get data: the collector's query API (live) or a DuckDB file (offline).

Both sources answer the same questions with the same JSON shapes, so the dashboard, the
``sagas`` command and the report exporter do not care which one they have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import duckdb
import httpx

from collector.api import saga_filter_from_params, saga_page
from collector.store.queries import Reader
from collector.store.schema import readable_problem, stored_version


class SourceError(Exception):
    """The data source could not answer (unreachable collector, bad file, bad request)."""


class Source(Protocol):
    def list_sagas(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def get_saga(self, key: str, records: bool = True) -> dict[str, Any] | None: ...
    def list_findings(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def overview(self) -> dict[str, Any]: ...
    def flow(self, saga_type: str) -> dict[str, Any]: ...
    def iter_sagas(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]: ...
    def describe(self) -> str: ...
    def record_action(self, actor: str, action: str, details: dict[str, Any]) -> bool: ...
    def audit_log(self) -> dict[str, Any]: ...


class ApiSource:
    """Reads through a running collector's /api/v1."""

    def __init__(self, url: str, token: str = "", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._collector: bool | None = None  # see _is_collector

    def describe(self) -> str:
        return f"collector {self.url}"

    def _get(
        self, path: str, params: dict[str, Any] | None = None, missing_ok: bool = False
    ) -> Any:
        """The API's JSON answer; None for a 404 when ``missing_ok`` (an unknown saga)."""
        try:
            r = self.http.get(
                path, params={k: v for k, v in (params or {}).items() if v not in (None, "")}
            )
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach the collector at {self.url}: {exc}") from exc
        if r.status_code == 404 and missing_ok and self._is_collector():
            return None
        return self._answer(r, f"GET {path}")

    def _answer(self, r: httpx.Response, what: str) -> Any:
        """The JSON of a successful answer; else a SourceError that says what went wrong."""
        if r.status_code >= 400:
            if not self._is_collector():
                raise SourceError(self._not_a_collector(f"{what} answered {r.status_code}"))
            try:
                message = r.json().get("error", r.text)
            except (ValueError, AttributeError):
                message = r.text
            raise SourceError(f"collector answered {r.status_code}: {message[:500]}")
        try:
            return r.json()
        except ValueError:
            raise SourceError(self._not_a_collector(f"{what} did not answer JSON")) from None

    def _is_collector(self) -> bool:
        """Whether the URL is a sagalens collector's base: its /healthz says so."""
        if self._collector is None:
            try:
                health = self.http.get("/healthz").json()
                self._collector = isinstance(health, dict) and "schema_version" in health
            except (httpx.HTTPError, ValueError):
                self._collector = False
        return self._collector

    def _not_a_collector(self, what: str) -> str:
        return (
            f"{self.url} is not a sagalens collector ({what}); give --collector the "
            "collector's base URL, e.g. http://127.0.0.1:4318"
        )

    def list_sagas(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self._get("/api/v1/sagas", params))

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            r = self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach the collector at {self.url}: {exc}") from exc
        return self._answer(r, f"POST {path}")

    def record_action(self, actor: str, action: str, details: dict[str, Any]) -> bool:
        """Append to the collector's audit log."""
        self._post("/api/v1/audit", {"actor": actor, "action": action, "details": details})
        return True

    def audit_log(self) -> dict[str, Any]:
        """The whole audit log: ``{"entries", "verified", "problems"}``."""
        return dict(self._get("/api/v1/audit"))

    def acknowledge(self, finding_id: str, by: str, note: str = "") -> dict[str, Any]:
        from urllib.parse import quote

        return dict(
            self._post(
                f"/api/v1/findings/{quote(finding_id, safe='')}/ack", {"by": by, "note": note}
            )
        )

    def get_saga(self, key: str, records: bool = True) -> dict[str, Any] | None:
        from urllib.parse import quote

        found = self._get(
            f"/api/v1/sagas/{quote(key, safe='')}", {"records": int(records)}, missing_ok=True
        )
        return dict(found) if found is not None else None

    def list_findings(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self._get("/api/v1/findings", params))

    def overview(self) -> dict[str, Any]:
        return dict(self._get("/api/v1/overview"))

    def flow(self, saga_type: str) -> dict[str, Any]:
        from urllib.parse import quote

        return dict(self._get(f"/api/v1/flow/{quote(saga_type, safe='')}"))

    def iter_sagas(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every matching saga with its steps and findings, a page of sagas per request.

        Pages follow a key cursor (``after``), as :meth:`Reader.iter_sagas` does, so sagas
        the collector stores meanwhile neither repeat nor push others out of the result.
        """
        page, after = 500, ""
        while True:
            rows = self.list_sagas(
                {
                    **params,
                    "details": 1,
                    "sort": "key",
                    "order": "asc",
                    "limit": page,
                    "after": after,
                }
            )["sagas"]
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1]["saga_key"]


class DbSource:
    """Reads a DuckDB file opened read-only (no collector may hold it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.conn = duckdb.connect(path, read_only=True)
        except duckdb.Error as exc:
            raise SourceError(
                f"cannot open {path} read-only: {exc}. If a collector is running on it, "
                "use --collector URL instead."
            ) from exc
        problem = readable_problem(stored_version(self.conn), path)
        if problem:
            self.conn.close()
            raise SourceError(problem)
        self.reader = Reader(self.conn)

    def describe(self) -> str:
        return f"file {self.path}"

    def record_action(self, actor: str, action: str, details: dict[str, Any]) -> bool:
        """A read-only file cannot take audit entries; the caller says so."""
        return False

    def audit_log(self) -> dict[str, Any]:
        """The whole audit log: ``{"entries", "verified", "problems"}``."""
        from collector.audit import read_audit_log

        try:
            return read_audit_log(self.conn)
        except duckdb.CatalogException as exc:
            raise SourceError(
                f"{self.path} has no audit log (written by an older sagalens?): {exc}"
            ) from exc

    def list_sagas(self, params: dict[str, Any]) -> dict[str, Any]:
        return saga_page(self.reader, _Params(params))

    def get_saga(self, key: str, records: bool = True) -> dict[str, Any] | None:
        return self.reader.get_saga(key, records=records)

    def list_findings(self, params: dict[str, Any]) -> dict[str, Any]:
        rows, total = self.reader.list_findings(
            kind=params.get("kind", ""),
            saga_key=params.get("saga", ""),
            limit=int(params.get("limit", 100)),
            offset=int(params.get("offset", 0)),
        )
        return {"findings": rows, "total": total}

    def overview(self) -> dict[str, Any]:
        return self.reader.overview()

    def flow(self, saga_type: str) -> dict[str, Any]:
        return self.reader.flow(saga_type)

    def iter_sagas(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        f = saga_filter_from_params(_Params(params))
        yield from self.reader.iter_sagas(f)


class _Params(dict[str, Any]):
    def getlist(self, name: str) -> list[Any]:
        v = self.get(name)
        if v is None:
            return []
        return list(v) if isinstance(v, list | tuple) else [v]


def open_source(collector_url: str = "", db: str = "", token: str = "") -> Source:
    """The API when a collector URL is given, else the file read-only."""
    if collector_url:
        return ApiSource(collector_url, token)
    if db:
        return DbSource(db)
    raise SourceError("give --collector URL or --db PATH")
