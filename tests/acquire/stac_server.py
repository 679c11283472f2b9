"""A local HTTP server that plays a STAC API and a COG bucket, for tests without network.

Real HTTP (http.server in a thread on 127.0.0.1): files answer HEAD and GET with byte
ranges (one range -> 206 with Content-Range, several -> multipart/byteranges, outside the
file -> 416); ``/stac`` answers the landing page, conformance, collections and item search
(GET and POST: bbox/intersects, datetime interval, collections, ids, ``query`` and a CQL2
``filter`` on properties, limit and paging by "next" links). Every request is logged with
the bytes sent, and paths can be told to fail (503) for a number of requests.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pandas as pd
import shapely
from shapely.geometry import shape

API = "/stac"
COLLECTION = "sentinel-2-l2a"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]
_RANGE = re.compile(r"^\s*(\d*)-(\d*)\s*$")


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int


def _ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Inclusive (start, end) byte ranges of a ``Range`` header; None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes":
        return None
    ranges = []
    for part in spec.split(","):
        match = _RANGE.match(part)
        if not match or (match[1] == "" and match[2] == ""):
            return None
        if match[1] == "":  # suffix: the last N bytes
            start, end = max(0, size - int(match[2])), size - 1
        else:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        if start >= size or start > end:
            return None
        ranges.append((start, end))
    return ranges


def _compare(value: Any, op: str, other: Any) -> bool:
    if value is None:
        return False
    return {"eq": value == other, "neq": value != other, "lt": value < other,
            "lte": value <= other, "gt": value > other, "gte": value >= other,
            "=": value == other, "<>": value != other, "<": value < other,
            "<=": value <= other, ">": value > other, ">=": value >= other}[op]


def _cql2(expr: dict, properties: dict) -> bool:
    op, args = expr["op"], expr.get("args", [])
    if op == "and":
        return all(_cql2(a, properties) for a in args)
    if op == "or":
        return any(_cql2(a, properties) for a in args)
    if op == "not":
        return not _cql2(args[0], properties)
    prop, value = args
    return _compare(properties.get(prop["property"]), op, value)


def _in_interval(when: pd.Timestamp, interval: str | None) -> bool:
    if not interval:
        return True
    if "/" not in interval:
        return when == pd.Timestamp(interval)
    start, end = interval.split("/")
    return ((start in ("", "..") or when >= pd.Timestamp(start))
            and (end in ("", "..") or when <= pd.Timestamp(end)))


class StacServer:
    """Serves files under ``root`` at ``/<relative path>`` and the items in ``items`` at
    ``/stac``; start with ``with StacServer(root) as server``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.items: list[dict] = []
        self.log: list[Request] = []
        self.failures: dict[str, int] = {}  # path substring -> failures left (-1: always)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api(self) -> str:
        return self.url + API

    def __enter__(self) -> StacServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, path_part: str, times: int = -1) -> None:
        """Answer 503 to the next ``times`` requests whose path holds ``path_part``."""
        with self._lock:
            self.failures[path_part] = times

    def requests(self, suffix: str = ".tif") -> list[Request]:
        with self._lock:
            return [r for r in self.log if r.path.endswith(suffix)]

    # ---- search ------------------------------------------------------------------------
    def search(self, body: dict) -> list[dict]:
        collections = body.get("collections")
        if isinstance(collections, str):
            collections = collections.split(",")
        ids = body.get("ids")
        if isinstance(ids, str):
            ids = ids.split(",")
        area = None
        if body.get("intersects"):
            area = shape(body["intersects"])
        elif body.get("bbox"):
            bbox = body["bbox"]
            bbox = [float(v) for v in (bbox.split(",") if isinstance(bbox, str) else bbox)]
            area = shapely.box(*bbox)
        query = body.get("query") or {}
        if isinstance(query, str):
            query = json.loads(query)
        found = []
        for item in self.items:
            props = item["properties"]
            if collections and item["collection"] not in collections:
                continue
            if ids and item["id"] not in ids:
                continue
            if area is not None and not shape(item["geometry"]).intersects(area):
                continue
            if not _in_interval(pd.Timestamp(props["datetime"]), body.get("datetime")):
                continue
            if not all(_compare(props.get(name), op, value)
                       for name, ops in query.items() for op, value in ops.items()):
                continue
            if body.get("filter") and not _cql2(body["filter"], props):
                continue
            found.append(item)
        return found

    def _page(self, body: dict, method: str) -> dict:
        found = self.search(body)
        limit = int(body.get("limit") or 10)
        start = int(str(body.get("token") or "next:0").split(":")[1])
        page = found[start:start + limit]
        links = [{"rel": "root", "href": self.api, "type": "application/json"}]
        if start + limit < len(found):
            token = f"next:{start + limit}"
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.api}/search", "method": "POST",
                              "type": "application/geo+json", "body": body | {"token": token}})
            else:
                query = {k: (json.dumps(v) if isinstance(v, dict | list) else v)
                         for k, v in body.items() if k != "token"}
                links.append({"rel": "next", "type": "application/geo+json",
                              "href": f"{self.api}/search?{urlencode(query)}&token={token}"})
        return {"type": "FeatureCollection", "features": page, "links": links,
                "numberMatched": len(found), "numberReturned": len(page)}

    def landing(self) -> dict:
        links = [
            {"rel": "self", "href": self.api, "type": "application/json"},
            {"rel": "root", "href": self.api, "type": "application/json"},
            {"rel": "conformance", "href": f"{self.api}/conformance", "type": "application/json"},
            {"rel": "data", "href": f"{self.api}/collections", "type": "application/json"},
            {"rel": "search", "href": f"{self.api}/search", "type": "application/geo+json",
             "method": "GET"},
            {"rel": "search", "href": f"{self.api}/search", "type": "application/geo+json",
             "method": "POST"},
        ]
        return {"type": "Catalog", "id": "fake-earth-search", "stac_version": "1.0.0",
                "title": "Earth Search (test double)", "description": "local test API",
                "conformsTo": CONFORMANCE, "links": links}

    def collection(self) -> dict:
        return {"type": "Collection", "id": COLLECTION, "stac_version": "1.0.0",
                "description": "Sentinel-2 L2A (test double)", "license": "proprietary",
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [["2015-06-27T10:25:31Z", None]]}},
                "links": [{"rel": "root", "href": self.api}]}

    # ---- HTTP --------------------------------------------------------------------------
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _record(self, status: int, sent: int) -> None:
                with server._lock:
                    server.log.append(Request(self.command, urlsplit(self.path).path,
                                              self.headers.get("Range"), status, sent))

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self._record(status, 0 if self.command == "HEAD" else len(body))

            def _json(self, payload: dict, status: int = 200) -> None:
                content = "application/geo+json" if payload.get("type") in (
                    "FeatureCollection", "Feature") else "application/json"
                self._send(status, json.dumps(payload).encode(), {"Content-Type": content})

            def _failing(self) -> bool:
                path = urlsplit(self.path).path
                with server._lock:
                    for part, left in server.failures.items():
                        if part in path and left != 0:
                            server.failures[part] = left - 1 if left > 0 else -1
                            break
                    else:
                        return False
                self._send(503, b"Service Unavailable", {"Content-Type": "text/plain"})
                return True

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                if self._failing():
                    return
                parts = urlsplit(self.path)
                path = parts.path.rstrip("/") or "/"
                if path == API:
                    return self._json(server.landing())
                if path == f"{API}/conformance":
                    return self._json({"conformsTo": CONFORMANCE})
                if path == f"{API}/collections":
                    return self._json({"collections": [server.collection()], "links": []})
                if path == f"{API}/collections/{COLLECTION}":
                    return self._json(server.collection())
                if path == f"{API}/search":
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    for key in ("intersects", "query", "filter"):
                        if key in query:
                            query[key] = json.loads(query[key])
                    return self._json(server._page(query, "GET"))
                self._file(path)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)  # read first: the connection is reused
                if self._failing():
                    return
                body = json.loads(raw or b"{}")
                if urlsplit(self.path).path.rstrip("/") == f"{API}/search":
                    return self._json(server._page(body, "POST"))
                self._send(404, b"not found")

            def _file(self, path: str) -> None:
                target = (server.root / path.lstrip("/")).resolve()
                if server.root.resolve() not in target.parents or not target.is_file():
                    return self._send(404, b"not found", {"Content-Type": "text/plain"})
                data = target.read_bytes()
                size = len(data)
                header = self.headers.get("Range")
                common = {"Accept-Ranges": "bytes", "Content-Type": "image/tiff"}
                if not header:
                    return self._send(200, data, common)
                ranges = _ranges(header, size)
                if ranges is None:
                    return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                if len(ranges) == 1:
                    start, end = ranges[0]
                    return self._send(206, data[start:end + 1], common | {
                        "Content-Range": f"bytes {start}-{end}/{size}"})
                boundary = uuid.uuid4().hex
                body = b""
                for start, end in ranges:
                    body += (f"--{boundary}\r\nContent-Type: image/tiff\r\n"
                             f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n").encode()
                    body += data[start:end + 1] + b"\r\n"
                body += f"--{boundary}--\r\n".encode()
                self._send(206, body, {"Accept-Ranges": "bytes", "Content-Type":
                                       f"multipart/byteranges; boundary={boundary}"})

        return Handler
