"""What the bytes of calls, tasks and replies mean: both ends of every trip encode and decode here.

Everything travels as cloudpickle (``_pickle``):

- an actor call is ``(actor, method, args, kwargs)``, and a request to open
  a stream ``(actor, method)``;
- a pool task is ``(fn, args, kwargs, values)``, ``values`` being the
  ``(ContextVar, value)`` pairs to set around the call;
- a reply, to either, is ``("ok", value, "")`` or ``("error", exception,
  remote traceback text)``.

Decode only bytes whose signature or MAC has been checked.
"""

from __future__ import annotations

import reprlib
import traceback
from typing import Any, Callable, Mapping, Sequence, Tuple, TypeVar

from . import _pickle

__all__ = (
    "RemoteError",
    "RemoteTraceback",
    "decode_call",
    "decode_reply",
    "decode_stream_target",
    "decode_task",
    "encode_call",
    "encode_error",
    "encode_result",
    "encode_stream_target",
    "encode_task",
)

_T = TypeVar("_T")
#: The longest text of an exception that travels in a RemoteError.
_MESSAGE_LIMIT = 2000
_MESSAGE_REPR = reprlib.Repr()
_MESSAGE_REPR.maxlevel = 4
_MESSAGE_REPR.maxstring = _MESSAGE_REPR.maxother = 200

#: A task as the worker runs it: ``fn(*args, **kwargs)`` with ``values`` set.
TaskCall = Tuple[Callable[..., Any], Tuple[Any, ...], Mapping[str, Any], Sequence[Tuple[Any, Any]]]


class RemoteError(Exception):
    """Stand in for a remote exception that could not be sent back as itself.

    An exception that cannot be pickled, or whose type does not exist on the
    caller's side, arrives as one of these, with its remote traceback as its
    ``__cause__`` (a ``RemoteTraceback``).

    Args:
        type_name: The remote exception's type, by qualified name.
        message: A bounded text of its arguments.
        remote_traceback: The traceback as the remote side formatted it.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.type_name, self.message, self.remote_traceback)


class RemoteTraceback(Exception):
    """Carry the remote traceback of an exception, as its ``__cause__``.

    Every exception that comes back from an actor or a worker carries one,
    unless it had a cause of its own: printing it prints the remote
    traceback beneath it.

    Args:
        text: The traceback as the remote side formatted it.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.text,)


def encode_call(actor: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
    """Return the request body for ``actor.method(*args, **kwargs)``; raise if unpicklable."""
    return _pickle.dumps((actor, method, tuple(args), dict(kwargs)))


def decode_call(data: bytes) -> tuple[Any, Any, Any, Any]:
    """Return ``(actor, method, args, kwargs)`` from an ``encode_call()`` body, unchecked."""
    actor, method, args, kwargs = _pickle.loads(data)
    return actor, method, args, kwargs


def encode_stream_target(actor: str, method: str) -> bytes:
    """Return the body of a request for a stream served by ``actor.method(channel)``."""
    return _pickle.dumps((actor, method))


def decode_stream_target(data: bytes) -> tuple[Any, Any]:
    """Return ``(actor, method)`` from an ``encode_stream_target()`` body, unchecked."""
    actor, method = _pickle.loads(data)
    return actor, method


def encode_task(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    values: Sequence[tuple[Any, Any]],
    max_size: int,
) -> bytes:
    """Return the frame that runs ``fn(*args, **kwargs)`` with ``values`` set, on a worker.

    Raises ``TypeError`` if any of it cannot be pickled, and ``ValueError``
    if it pickles to more than ``max_size`` bytes.
    """
    try:
        payload = _pickle.dumps((fn, args, kwargs, tuple(values)))
    except Exception as exc:
        name = _describe(fn)
        raise TypeError(f"cannot send {name} and its arguments to a worker: {exc}") from exc
    if len(payload) > max_size:
        raise ValueError(
            f"{_describe(fn)} and its arguments are {len(payload)} bytes pickled, more than a "
            f"task may carry ({max_size})"
        )
    return payload


def decode_task(data: bytes) -> TaskCall:
    """Return ``(fn, args, kwargs, values)`` from an ``encode_task()`` frame."""
    fn, args, kwargs, values = _pickle.loads(data)
    return fn, args, kwargs, values


def decode_reply(data: bytes) -> tuple[bool, Any]:
    """Return ``(True, result)`` or ``(False, exception)`` from a verified reply body."""
    status, value, remote_tb = _pickle.loads(data)
    if status == "ok":
        return True, value
    if isinstance(value, BaseException) and value.__cause__ is None and remote_tb:
        value.__cause__ = RemoteTraceback(remote_tb)
    return False, value


def encode_error(exc: BaseException, max_size: int | None = None) -> bytes:
    """Return the reply body reporting ``exc``, with its traceback; ``decode_reply()``'s input.

    Never raises, whatever ``exc`` does when pickled or printed: one that
    cannot be pickled travels as a ``RemoteError`` with its type's name and
    a bounded, safe text of it, and if even that fails, or the reply would
    weigh more than ``max_size`` bytes, as a ``RemoteError`` saying so.
    """
    text = _safely(_traceback_text, exc) or "(the traceback could not be formatted)\n"
    for make in (_as_itself, _stand_in):
        body = _safely(make, exc, text)
        if body is not None and (max_size is None or len(body) <= max_size):
            return body
    if max_size is not None:
        text = text[max(0, len(text) - max_size // 4) :]
    type_name = _safely(lambda: type(exc).__qualname__) or "exception"
    fallback = RemoteError(str(type_name), "the exception could not be sent back", text)
    body = _pickle.dumps(("error", fallback, text))
    if max_size is not None and len(body) > max_size:
        body = _pickle.dumps(("error", RemoteError("exception", "too large to send"), ""))
    return body


def _safely(fn: Callable[..., _T], *args: Any) -> _T | None:
    # Whatever a user's object does in __str__, __repr__ or __reduce__, even SystemExit.
    try:
        return fn(*args)
    except BaseException:
        return None


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _as_itself(exc: BaseException, text: str) -> bytes:
    return _pickle.dumps(("error", exc, text))


def _stand_in(exc: BaseException, text: str) -> bytes:
    message = _safely(str, exc)
    if message is None:
        # reprlib bounds depth and length, and copes with members whose repr fails.
        message = _safely(_MESSAGE_REPR.repr, exc.args) or "(the exception could not be printed)"
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    stand_in = RemoteError(type(exc).__qualname__, message, text)
    return _pickle.dumps(("error", stand_in, text))


def encode_result(value: object, source: object, max_size: int | None = None) -> bytes:
    """Return the reply body carrying ``value``, the result of ``source``.

    ``source`` is the callable that returned it, or a description such as
    ``"actor.method()"``; it is named only if something goes wrong. A value
    that cannot be pickled is reported as a ``TypeError`` instead, and one
    that pickles to more than ``max_size`` bytes as a ``ValueError``.
    Never raises, whatever ``value`` does when pickled.
    """
    try:
        body = _pickle.dumps(("ok", value, ""))
    except BaseException as exc:
        reason = _safely(str, exc) or type(exc).__name__
        unsendable = TypeError(f"the result of {_describe(source)} cannot be sent: {reason}")
        return encode_error(unsendable, max_size)
    if max_size is not None and len(body) > max_size:
        too_big = ValueError(
            f"the result of {_describe(source)} is {len(body)} bytes pickled, more than a "
            f"reply may carry ({max_size})"
        )
        return encode_error(too_big, max_size)
    return body


def _describe(source: object) -> str:
    if isinstance(source, str):
        return source
    return f"{_safely(_pickle.callable_name, source) or 'a callable'}()"
