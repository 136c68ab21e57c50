"""The codec: what the bytes of calls, tasks and replies mean, encoded and decoded in process."""

from __future__ import annotations

import pickle
import threading

import pytest

from contextthreads.fluster import RemoteError, RemoteTraceback
from contextthreads.fluster._codec import (
    decode_call,
    decode_reply,
    decode_stream_target,
    decode_task,
    encode_call,
    encode_error,
    encode_result,
    encode_stream_target,
    encode_task,
)

from . import tasks

pytest.importorskip("cloudpickle")


def test_calls_and_stream_targets_round_trip() -> None:
    """An actor call comes back as (actor, method, args, kwargs), a stream request as
    (actor, method)."""
    call = ("calc", "add", (1,), {"b": 2})
    assert decode_call(encode_call(*call)) == call
    assert decode_stream_target(encode_stream_target("echoer", "echo")) == ("echoer", "echo")


def test_task_round_trips_with_its_context_values() -> None:
    """A task comes back as the callable (by reference), its arguments and the
    (ContextVar, value) pairs, the very variables included."""
    data = encode_task(tasks.square, (3,), {}, [(tasks.REQUEST_ID, "req-1")], 1 << 20)
    fn, args, kwargs, values = decode_task(data)
    assert (fn, args, kwargs) == (tasks.square, (3,), {})
    assert list(values) == [(tasks.REQUEST_ID, "req-1")]


def test_task_that_cannot_travel_raises_at_encoding() -> None:
    """An unpicklable argument is a TypeError naming the callable; a task over the size
    limit a ValueError saying how big it is."""
    with pytest.raises(TypeError, match=r"cannot send square\(\) and its arguments"):
        encode_task(tasks.square, (threading.Lock(),), {}, (), 1 << 20)
    with pytest.raises(ValueError, match=r"len\(\) and its arguments are \d+ bytes"):
        encode_task(len, (b"x" * 2048,), {}, (), 1024)


def test_results_and_errors_round_trip() -> None:
    """A result decodes as (True, value); an exception as (False, it), with its type, message
    and the remote traceback chained as its cause."""
    assert decode_reply(encode_result({"a": [1, 2]}, "calc.add()")) == (True, {"a": [1, 2]})
    try:
        raise KeyError("missing")
    except KeyError as exc:
        body = encode_error(exc)
    ok, error = decode_reply(body)
    assert not ok
    assert isinstance(error, KeyError)
    assert error.args == ("missing",)
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "raise KeyError" in error.__cause__.text


def test_what_cannot_be_sent_back_is_reported_as_such() -> None:
    """An exception that cannot be pickled arrives as a RemoteError naming its type; a
    result that cannot be, as a TypeError naming its source; one over the limit, as a
    ValueError."""
    error = RuntimeError("holds a lock")
    error.lock = threading.Lock()  # type: ignore[attr-defined]
    ok, stand_in = decode_reply(encode_error(error))
    assert not ok
    assert isinstance(stand_in, RemoteError)
    assert (stand_in.type_name, stand_in.message) == ("RuntimeError", "holds a lock")
    ok, unsendable = decode_reply(encode_result(threading.Lock(), tasks.square))
    assert not ok
    assert isinstance(unsendable, TypeError)
    assert "the result of square() cannot be sent" in str(unsendable)
    ok, too_big = decode_reply(encode_result(b"x" * 4096, "calc.blob()", max_size=1024))
    assert not ok
    assert isinstance(too_big, ValueError)
    assert "the result of calc.blob() is" in str(too_big)


def test_remote_errors_survive_plain_pickle() -> None:
    """RemoteError and RemoteTraceback pickle with their fields, so a task may re-raise them."""
    error = RemoteError("KeyError", "gone", "Traceback ...")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.type_name, copy.message, copy.remote_traceback) == (
        "KeyError",
        "gone",
        "Traceback ...",
    )
    assert pickle.loads(pickle.dumps(RemoteTraceback("text"))).text == "text"
