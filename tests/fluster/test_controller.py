"""The controller: an endpoint registry served over signed HTTP, and its client."""

from __future__ import annotations

from typing import Iterator

import pytest

from contextthreads.fluster import Controller, ControllerClient, RpcAuthError, RpcConnectionError

from .support import SECRET, WAIT


@pytest.fixture(scope="module")
def controller() -> Iterator[Controller]:
    """A controller serving on a free port for the whole module."""
    with Controller(SECRET) as running:
        yield running


# -- the registry ------------------------------------------------------------


def test_controller_reports_the_port_it_bound() -> None:
    """Port 0 picks a free port; address names it and a client reaches it there."""
    with Controller(SECRET) as running:
        assert running.port > 0
        assert running.address == f"http://127.0.0.1:{running.port}"
        ControllerClient(running.address, SECRET).ping()
    with pytest.raises(RpcConnectionError):
        ControllerClient(running.address, SECRET, timeout=WAIT).ping()


def test_controller_register_list_unregister(controller: Controller) -> None:
    """Endpoints are listed by prefix with their metadata and disappear when unregistered."""
    client = ControllerClient(controller.address, SECRET)
    first = client.register("ns-x/svc", "http://127.0.0.1:1", "ns-x", {"pid": "1"})
    second = client.register("ns-x/svc-2", "http://127.0.0.1:2", "ns-x/job")
    client.register("ns-y/svc", "http://127.0.0.1:3", "ns-y")
    listed = client.list_endpoints("ns-x/")
    assert [(e.name, e.address, e.job_id) for e in listed] == [
        ("ns-x/svc", "http://127.0.0.1:1", "ns-x"),
        ("ns-x/svc-2", "http://127.0.0.1:2", "ns-x/job"),
    ]
    assert listed[0].metadata == {"pid": "1"}
    assert client.unregister(first) is True
    assert client.unregister(first) is False
    assert [e.endpoint_id for e in client.list_endpoints("ns-x/")] == [second]
    assert controller.unregister_job("ns-x") == 1
    assert client.list_endpoints("ns-x/") == []


def test_controller_wrong_secret_is_refused(controller: Controller) -> None:
    """A client with another secret gets RpcAuthError and registers nothing."""
    with pytest.raises(RpcAuthError):
        ControllerClient(controller.address, "other-secret").register("ns-q/a", "http://h:1", "q")
    assert controller.list_endpoints("ns-q/") == []
