"""Resolvers: turn an actor name into the endpoints that serve it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, Union, runtime_checkable

from ._context import get_fluster_ctx
from ._controller import ControllerClient

__all__ = (
    "ClusterResolver",
    "FixedResolver",
    "ResolveResult",
    "ResolvedEndpoint",
    "Resolver",
)


@dataclass(frozen=True)
class ResolvedEndpoint:
    """Where one instance of an actor can be called.

    Attributes:
        url: The actor server's URL (``ActorClient(url, name)``).
        actor_id: An id for this instance (the controller's endpoint id).
        metadata: Free-form strings registered with it.
    """

    url: str
    actor_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolveResult:
    """The endpoints found for ``name``, in registration order (possibly none).

    Attributes:
        name: The name resolved, as given (not namespaced).
        endpoints: What serves it, oldest registration first.
    """

    name: str
    endpoints: tuple[ResolvedEndpoint, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Return True if no endpoint serves the name."""
        return not self.endpoints

    def first(self) -> ResolvedEndpoint:
        """Return the first endpoint, the oldest registered.

        Raises:
            LookupError: If no endpoint serves the name.
        """
        if not self.endpoints:
            raise LookupError(f"no endpoint is registered for {self.name!r}")
        return self.endpoints[0]


@runtime_checkable
class Resolver(Protocol):
    """Anything that resolves actor names to endpoints; ``resolve()`` must be thread-safe.

    A ``runtime_checkable`` protocol: ``isinstance(obj, Resolver)`` tells
    whether ``obj`` has a ``resolve`` method.
    """

    def resolve(self, name: str) -> ResolveResult:
        """Return the endpoints currently serving ``name``.

        Args:
            name: An actor name, as its server registered it.
        """
        ...


class FixedResolver:
    """Resolve from a fixed mapping of name to URL(s); for tests and static deployments.

    Immutable once built, so thread-safe. Names are not namespaced.

    Args:
        mapping: Each name's URL, or a sequence of URLs in the order
            ``resolve()`` returns them.
    """

    def __init__(self, mapping: Mapping[str, Union[str, Sequence[str]]]) -> None:
        self._endpoints: dict[str, tuple[ResolvedEndpoint, ...]] = {}
        for name, urls in mapping.items():
            listed = [urls] if isinstance(urls, str) else list(urls)
            self._endpoints[name] = tuple(
                ResolvedEndpoint(url=url, actor_id=f"fixed-{name}-{index}")
                for index, url in enumerate(listed)
            )

    def resolve(self, name: str) -> ResolveResult:
        """Return the configured endpoints for ``name``; none if it is not in the mapping.

        Args:
            name: A key of the mapping.
        """
        return ResolveResult(name, self._endpoints.get(name, ()))


class ClusterResolver:
    """Resolve names through the controller, inside the namespace of the current FlusterContext.

    The namespace and the secret are read from the context current when
    ``resolve()`` is called, not when the resolver is made, so one resolver
    serves every job of a process, each thread in its own job's namespace. A
    thread that does not carry a FlusterContext (a plain ``threading.Thread``
    before 3.14) gets ``RuntimeError``; start threads with
    ``contextthreads.ContextThread``. Thread-safe.

    Args:
        controller_address: The controller's ``http://`` or ``https://``
            address.
        timeout: Seconds each resolution's call to the controller may take,
            all of it.
        ssl_context: The client context for an ``https://`` controller; by
            default one trusting ``$FLUSTER_TLS_CA``, else the system's CAs.
    """

    def __init__(
        self,
        controller_address: str,
        timeout: float = 5.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.controller_address = controller_address.rstrip("/")
        self.timeout = timeout
        self.ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"ClusterResolver({self.controller_address!r})"

    def resolve(self, name: str) -> ResolveResult:
        """Return the endpoints registered as ``<namespace>/<name>`` for the current namespace.

        Args:
            name: The actor name, without its namespace.

        Raises:
            RuntimeError: If the calling thread carries no FlusterContext.
            RpcError: If the controller cannot be reached, does not answer in
                time, or refuses (one of its subclasses).
        """
        ctx = get_fluster_ctx()
        if ctx is None:
            raise RuntimeError(
                f"ClusterResolver.resolve({name!r}) needs a FlusterContext and this thread "
                "has none: a plain threading.Thread starts without its creator's context; "
                "use contextthreads.ContextThread, or enter fluster_ctx_scope()"
            )
        full = f"{ctx.namespace}/{name}"
        client = ControllerClient(
            self.controller_address, ctx.secret, self.timeout, ssl_context=self.ssl_context
        )
        found = tuple(
            ResolvedEndpoint(url=e.address, actor_id=e.endpoint_id, metadata=e.metadata)
            for e in client.list_endpoints(full)
            # The controller matches prefixes; "pool:worker-1" must not find "pool:worker-10".
            if e.name == full
        )
        return ResolveResult(name, found)
