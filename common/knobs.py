"""One home per setting: a builder argument that feeds another class borrows that class's field.

``AppArgs`` (serve_app.py) is a flat list of ``key=value`` arguments, but most of them configure some other
class (``TurnConfig``, ``HostOptions``, ``ClientLimits``, ...). Such an argument is declared with
``borrow(Home, "field")``: its default, and for a pydantic home its checks, come from ``Home.field``, the
setting's one definition (with its comment). ``values_for(Home, args)`` then builds ``Home``'s keyword
arguments from the borrowed fields, so no argument is mapped by hand. tests/unit/test_knobs.py fails when a
setting is defined twice.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

HOME_KEY = "home"  # in a borrowed field's json_schema_extra: "module.Class.field"


def home_default(home: type, name: str) -> Any:
    """The default of ``home.name``: a pydantic model's or a dataclass's field."""
    if issubclass(home, BaseModel):
        return home.model_fields[name].get_default(call_default_factory=True)
    for item in dataclasses.fields(home):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            raise ValueError(f"{home.__name__}.{name} has no default")
    raise AttributeError(f"{home.__name__} has no field {name!r}")


def home_name(home: type, name: str) -> str:
    return f"{home.__module__}.{home.__qualname__}.{name}"


def borrow(home: type, name: str, **checks: Any) -> Any:
    """A field defined in ``home``: its default (a pydantic home's checks too; ``checks`` add more)."""
    extra = {HOME_KEY: home_name(home, name)}
    if issubclass(home, BaseModel):
        info = copy.copy(home.model_fields[name])
        info.json_schema_extra = extra
        return FieldInfo.merge_field_infos(info, **checks) if checks else info
    default = home_default(home, name)
    if isinstance(default, dict | list | set):
        return Field(default_factory=lambda: copy.deepcopy(default), json_schema_extra=extra, **checks)
    return Field(default=default, json_schema_extra=extra, **checks)


def borrowed_from(model: type[BaseModel], home: type) -> dict[str, str]:
    """``model``'s fields borrowed from ``home``: model field -> home field."""
    prefix = home_name(home, "")
    found = {}
    for field_name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        origin = extra.get(HOME_KEY)
        if isinstance(origin, str) and origin.startswith(prefix):
            found[field_name] = origin[len(prefix):]
    return found


def values_for(home: type, args: BaseModel) -> dict[str, Any]:
    """Keyword arguments of ``home`` from the fields ``args`` borrowed from it."""
    return {home_field: getattr(args, field) for field, home_field in borrowed_from(type(args), home).items()}
