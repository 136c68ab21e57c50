"""The controller: a registry of actor endpoints and job specs, served over signed HTTP.

Requests are JSON objects POSTed to ``/<op>``, signed for this controller
and good once (``_http``); the body repeats ``op``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from ._client import post
from ._http import Reply, SignedServer, SignedService
from ._wire import RpcProtocolError

__all__ = ("Controller", "ControllerClient", "Endpoint")

logger = logging.getLogger("contextthreads.fluster")


@dataclass(frozen=True)
class Endpoint:
    """One registered endpoint: a full (namespaced) name, where to reach it, and who owns it.

    Attributes:
        endpoint_id: The controller's id for it, unique in that controller.
        name: The full name, ``<namespace>/<actor name>``.
        address: The URL of the actor server that hosts it.
        job_id: The job that registered it; its endpoints go when it ends.
        metadata: Free-form strings the registering job attached.
    """

    endpoint_id: str
    name: str
    address: str
    job_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-ready dict the controller sends for this endpoint."""
        return {
            "endpoint_id": self.endpoint_id,
            "name": self.name,
            "address": self.address,
            "job_id": self.job_id,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoint:
        """Return the endpoint a ``to_json()`` dict describes.

        Args:
            data: A dict as ``to_json()`` returns it (decoded from JSON).

        Raises:
            KeyError: If a field is missing.
        """
        return cls(
            endpoint_id=str(data["endpoint_id"]),
            name=str(data["name"]),
            address=str(data["address"]),
            job_id=str(data["job_id"]),
            metadata={str(k): str(v) for k, v in dict(data.get("metadata") or {}).items()},
        )


def _text(request: Mapping[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


class Controller(SignedService):
    """Serve an endpoint registry and a job-spec store on ``host`` (127.0.0.1 by default).

    The socket is bound in the constructor: ``address`` holds the port
    actually bound, so ``port=0`` picks a free one without a race. Call
    ``start()`` (or use ``with``) to serve; each request is served on a
    thread of its own. Only requests signed with ``secret`` are answered.
    Registry operations are also available in-process, and every method is
    thread-safe. ``LocalCluster`` makes and runs one for you.

    Args:
        secret: The cluster secret requests must be signed with.
        host: The address to bind; ``0.0.0.0`` for every interface.
        port: The port to bind; 0 picks a free one.
        advertise_host: The name others reach it by, when ``host`` is a
            wildcard; it is also the ``Host`` signed requests must name.
        ssl_context: A server context holding a certificate and its key
            (``TLSConfig.server_context()``): it then serves TLS, at an
            ``https://`` address.
    """

    def __init__(
        self,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        advertise_host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._jobs: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._server = SignedServer(
            host,
            port,
            secret,
            self._dispatch,
            "fluster-controller",
            advertise_host=advertise_host,
            ssl_context=ssl_context,
        )

    def register(
        self, name: str, address: str, job_id: str, metadata: Mapping[str, str] | None = None
    ) -> str:
        """Record an endpoint and return its id.

        Args:
            name: Its full name, ``<namespace>/<actor name>``.
            address: The URL it is reached at.
            job_id: The job it belongs to.
            metadata: Free-form strings to keep with it.
        """
        with self._lock:
            endpoint_id = f"ep-{next(self._ids)}"
            self._endpoints[endpoint_id] = Endpoint(
                endpoint_id, name, address, job_id, dict(metadata or {})
            )
        logger.debug("registered %s at %s for job %s", name, address, job_id)
        return endpoint_id

    def unregister(self, endpoint_id: str) -> bool:
        """Forget an endpoint; return whether it was registered.

        Args:
            endpoint_id: The id ``register()`` returned.
        """
        with self._lock:
            return self._endpoints.pop(endpoint_id, None) is not None

    def unregister_job(self, job_id: str) -> int:
        """Forget every endpoint of ``job_id`` and of the jobs under it; return how many.

        Args:
            job_id: The job whose endpoints go, with its children's.
        """
        with self._lock:
            gone = [
                key
                for key, endpoint in self._endpoints.items()
                if endpoint.job_id == job_id or endpoint.job_id.startswith(job_id + "/")
            ]
            for key in gone:
                del self._endpoints[key]
            return len(gone)

    def list_endpoints(self, prefix: str = "") -> list[Endpoint]:
        """Return the endpoints whose full name starts with ``prefix``, oldest first.

        Args:
            prefix: The start of the full names; ``""`` lists every endpoint.
        """
        with self._lock:
            return [e for e in self._endpoints.values() if e.name.startswith(prefix)]

    def put_job(self, job_id: str, spec: bytes) -> None:
        """Store the serialized entrypoint of ``job_id`` for its worker to fetch.

        Args:
            job_id: The job the entrypoint is for.
            spec: Its pickled ``Entrypoint``.
        """
        with self._lock:
            self._jobs[job_id] = spec

    def get_job(self, job_id: str) -> bytes:
        """Return the serialized entrypoint of ``job_id``.

        Args:
            job_id: A job whose entrypoint was stored with ``put_job()``.

        Raises:
            KeyError: If none was stored for it.
        """
        with self._lock:
            return self._jobs[job_id]

    def forget_job(self, job_id: str) -> None:
        """Drop the spec and endpoints of a job that ended, and of the jobs under it.

        Args:
            job_id: The job that ended.
        """
        with self._lock:
            self._jobs.pop(job_id, None)
        self.unregister_job(job_id)

    def _dispatch(self, method: str, path: str, body: bytes) -> Reply:
        op = path.lstrip("/")
        try:
            request = json.loads(body)
            if not isinstance(request, dict) or request.get("op") != op or method != "POST":
                raise ValueError("expected a POSTed JSON object whose 'op' matches the path")
            result = self._apply(op, request)
        except (ValueError, TypeError, KeyError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            return 400, json.dumps(reply).encode()
        return 200, json.dumps({"ok": True, **result}).encode()

    def _apply(self, op: str, request: Mapping[str, Any]) -> dict[str, Any]:
        if op == "register":
            metadata = request.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise ValueError("'metadata' must be an object")
            endpoint_id = self.register(
                _text(request, "name"),
                _text(request, "address"),
                _text(request, "job_id"),
                {str(k): str(v) for k, v in metadata.items()},
            )
            return {"endpoint_id": endpoint_id}
        if op == "unregister":
            return {"removed": self.unregister(_text(request, "endpoint_id"))}
        if op == "list":
            return {
                "endpoints": [e.to_json() for e in self.list_endpoints(_text(request, "prefix"))]
            }
        if op == "get_job":
            return {"spec": base64.b64encode(self.get_job(_text(request, "job_id"))).decode()}
        if op == "ping":
            return {}
        raise ValueError(f"unknown operation {op!r}")


class ControllerClient:
    """Call a controller over signed HTTP. Thread-safe: every call has its own connection.

    Methods raise ``RpcError`` subclasses when the controller cannot be
    reached, does not answer in time, or refuses the request.

    Args:
        address: The controller's ``http://`` or ``https://`` address.
        secret: The cluster secret requests are signed with.
        timeout: Seconds each whole call may take: connecting, any TLS
            handshake, sending and every wait for the answer.
        ssl_context: The client context for an ``https://`` address; by
            default one trusting ``$FLUSTER_TLS_CA``, else the system's CAs.
    """

    def __init__(
        self,
        address: str,
        secret: str,
        timeout: float = 5.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self._secret = secret
        self._timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"ControllerClient({self.address!r})"

    def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        body = json.dumps({"op": op, **fields}).encode()
        reply = json.loads(
            post(self.address, f"/{op}", body, self._secret, self._timeout, self._ssl_context)
        )
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise RpcProtocolError(f"controller refused {op}: {reply!r}")
        return reply

    def register(
        self, name: str, address: str, job_id: str, metadata: Mapping[str, str] | None = None
    ) -> str:
        """Register an endpoint under its full name; return its id.

        Args:
            name: Its full name, ``<namespace>/<actor name>``.
            address: The URL it is reached at.
            job_id: The job it belongs to.
            metadata: Free-form strings to keep with it.
        """
        reply = self._call(
            "register", name=name, address=address, job_id=job_id, metadata=dict(metadata or {})
        )
        return str(reply["endpoint_id"])

    def unregister(self, endpoint_id: str) -> bool:
        """Unregister an endpoint; return whether it was registered.

        Args:
            endpoint_id: The id ``register()`` returned.
        """
        return bool(self._call("unregister", endpoint_id=endpoint_id)["removed"])

    def list_endpoints(self, prefix: str) -> list[Endpoint]:
        """Return the endpoints whose full name starts with ``prefix``, oldest first.

        Args:
            prefix: The start of the full names, ``<namespace>/`` for a namespace.
        """
        return [Endpoint.from_json(e) for e in self._call("list", prefix=prefix)["endpoints"]]

    def get_job(self, job_id: str) -> bytes:
        """Return the serialized entrypoint stored for ``job_id``.

        Args:
            job_id: The job whose entrypoint to fetch: a worker's own.

        Raises:
            RpcProtocolError: If the controller has none for it.
        """
        return base64.b64decode(self._call("get_job", job_id=job_id)["spec"])

    def ping(self) -> None:
        """Return if the controller answers with our secret; raise ``RpcError`` otherwise.

        Raises:
            RpcError: A subclass saying what failed (``RpcAuthError`` for a
                controller of another cluster).
        """
        self._call("ping")
