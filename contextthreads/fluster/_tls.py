"""Optional TLS for Fluster's servers and clients, with the stdlib's ``ssl``.

Signing stays on under TLS: TLS hides the traffic and proves the server's
name, the cluster secret still proves who may call. A server serves TLS when
given an ``ssl.SSLContext`` holding its certificate and key (``https://``
addresses); a client speaks TLS to ``https://`` addresses, verifying the
server's certificate against the CA file of ``FLUSTER_TLS_CA``, or else the
system's, unless it is handed a context of its own.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from typing import Mapping

from ._context import ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY
from ._wire import Address

__all__ = ("TLSConfig", "client_context")

_defaults: dict[str | None, ssl.SSLContext] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class TLSConfig:
    """Where a cluster's TLS files are: the servers' certificate and key, the CA clients trust.

    Paths, not contents, so worker processes can be told them in their
    environment (``to_env()``). Immutable; each call makes a new context.
    Give it to ``LocalCluster(tls=...)``, which serves and verifies with it.

    Attributes:
        certfile: The PEM certificate chain servers present. It must name the
            hosts clients reach them by (the advertised hosts).
        keyfile: The certificate's private key, PEM.
        cafile: The PEM file of CAs clients verify servers against; None
            means the system's CAs.
    """

    certfile: str
    keyfile: str
    cafile: str | None = None

    def server_context(self) -> ssl.SSLContext:
        """Return a server context presenting the certificate (TLS 1.2 at least).

        Raises:
            OSError: If a file cannot be read (``ssl.SSLError`` if it is not a
                usable certificate or key).
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Return a client context verifying servers' certificates and names against ``cafile``."""
        return ssl.create_default_context(cafile=self.cafile)

    def to_env(self) -> dict[str, str]:
        """Return the environment variables ``from_env()`` reads this back from."""
        env = {ENV_TLS_CERT: self.certfile, ENV_TLS_KEY: self.keyfile}
        if self.cafile is not None:
            env[ENV_TLS_CA] = self.cafile
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TLSConfig | None:
        """Return the config a worker process was given, or None if it was given none.

        Args:
            environ: Where to read ``FLUSTER_TLS_CERT``, ``FLUSTER_TLS_KEY``
                and ``FLUSTER_TLS_CA``; by default ``os.environ``.
        """
        env = os.environ if environ is None else environ
        cert, key = env.get(ENV_TLS_CERT), env.get(ENV_TLS_KEY)
        if not cert or not key:
            return None
        return cls(cert, key, env.get(ENV_TLS_CA) or None)


def client_context(address: Address, given: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """Return the context a client speaks to ``address`` with: None for ``http://``.

    For ``https://`` it is ``given``, or else one made once per CA file that
    trusts ``$FLUSTER_TLS_CA`` (the system's CAs without it).
    """
    if address.scheme != "https":
        return None
    if given is not None:
        return given
    cafile = os.environ.get(ENV_TLS_CA) or None
    with _lock:
        context = _defaults.get(cafile)
        if context is None:
            context = _defaults[cafile] = ssl.create_default_context(cafile=cafile)
        return context
