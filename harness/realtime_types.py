"""Our ``/v1/realtime`` server events checked against the official ``openai`` SDK's own server-event types.

The SDK's own client builds its event objects without validating them (``construct_type_unchecked``), so a
wrong shape passes it silently; clients that do validate (the OpenAI Agents SDK runs a pydantic
``TypeAdapter`` over the same types) refuse the event and log an error on every reply. The tests hold every
event we send to the stricter reading: the event's ``type`` must be one of the dialect's server-event union
(``openai.types.realtime`` for GA, ``openai.types.beta.realtime`` for beta), the event must validate against
that member in pydantic's strict mode (wrong literals, strings for numbers and missing fields fail), and it
may carry no field the SDK does not model (its models allow extras, which would hide a misnamed field) beyond
the few that OpenAI's own server sends too (``SESSION_EXTRAS``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Union, get_args, get_origin

import pydantic
from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime.realtime_server_event import RealtimeServerEvent as GAServerEvent

from protocol.realtime_events import Dialect

UNIONS = {"ga": GAServerEvent, "beta": BetaServerEvent}
# Fields of a session that OpenAI's server sends and the SDK's session.created / session.updated types leave
# out (the GA ones are in the SDK's RealtimeSessionCreateResponse, the shape of a session the server made).
SESSION_EXTRAS = frozenset({"session.id", "session.object", "session.expires_at"})


class RealtimeEventMismatch(AssertionError):
    """A server event the SDK's types refuse; the message names the dialect, the event type and the fields."""


@cache
def server_event_models(dialect: Dialect) -> dict[str, type[pydantic.BaseModel]]:
    """The dialect's server-event union as ``type`` literal -> the SDK model of that event."""
    union = get_args(UNIONS[dialect])[0]  # Annotated[Union[...], PropertyInfo(discriminator="type")]
    assert get_origin(union) is Union, union
    models: dict[str, type[pydantic.BaseModel]] = {}
    for model in get_args(union):
        for literal in get_args(model.model_fields["type"].annotation):
            models[literal] = model
    return models


def check_server_event(event: Any, dialect: Dialect) -> pydantic.BaseModel:
    """The event as the SDK's model of it; ``RealtimeEventMismatch`` where the SDK's types refuse it."""
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise RealtimeEventMismatch(f"{dialect} server event: not a JSON object with a string 'type': {_show(event)}")
    kind = event["type"]
    model = server_event_models(dialect).get(kind)
    if model is None:
        raise RealtimeEventMismatch(f"{dialect} server event {kind!r}: not a server event type of the openai SDK's "
                                    f"{dialect} RealtimeServerEvent union")
    try:
        parsed = model.model_validate(event, strict=True)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{_path(e['loc'])}: {e['msg']} (got {_show(e.get('input'))})" for e in _meant(exc.errors()))
        raise RealtimeEventMismatch(f"{dialect} server event {kind!r} does not match the openai SDK's "
                                    f"{model.__name__}: {problems}") from None
    extras = [path for path in _extra_fields(parsed, "") if path not in SESSION_EXTRAS]
    if extras:
        raise RealtimeEventMismatch(f"{dialect} server event {kind!r}: fields the openai SDK's {model.__name__} does "
                                    f"not know: {', '.join(extras)}")
    return parsed


def _meant(errors: list[Any]) -> list[Any]:
    """The errors of the union members the event meant. Pydantic does not read the SDK's discriminators
    (``PropertyInfo``), so a union (a conversation item, a session) reports every member's errors, each under
    the member's class name; a member whose own ``type`` or ``role`` literal refused the input was not meant."""
    not_meant = {e["loc"][:-1] for e in errors if e["type"] == "literal_error" and len(e["loc"]) >= 2
                 and e["loc"][-1] in ("type", "role") and str(e["loc"][-2])[:1].isupper()}
    meant = [e for e in errors if not any(e["loc"][:len(p)] == p for p in not_meant)]
    return meant or errors


def _extra_fields(value: Any, path: str) -> list[str]:
    """Dotted paths of the fields the SDK's models took in as extras, at any depth."""
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _extra_fields(v, f"{path}[{i}]")]
    if not isinstance(value, pydantic.BaseModel):
        return []
    found = [f"{path}.{name}".lstrip(".") for name in value.model_extra or {}]
    for name in type(value).model_fields:
        found += _extra_fields(getattr(value, name), f"{path}.{name}".lstrip("."))
    return found


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(the event)"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
