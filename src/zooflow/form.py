"""How the settings look as a form in Prefect's UI (its parameter JSON schema) and what a form sends back.

Prefect renders a parameter's JSON schema as the one-off form and validates a run's parameters
against that schema on the server before the run is created. These helpers keep that form plain
(no ``str | None`` switches), ordered as a person fills it in, and strict where the settings are:
a blank field falls back to its default, a blank preset or an inconsistent pair is refused.
"""

from __future__ import annotations

import types
import typing
from typing import Any

NULL = {"type": "null"}
# A ``bool | None`` setting (None: the toolchain's or the flow's choice) as the form's drop-down. A toggle
# cannot say "not set": an untouched one sent false (every UI run exported batch 1, issue 31).
TRI_STATE: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


def plain_optionals(schema: dict[str, Any]) -> None:
    """An optional field (``anyOf: [T, null]``, default null) as plain ``T`` with no default.

    Prefect's form draws ``anyOf`` as a type switch ("str | None", 'Property is type "None"'), and
    its server-side validation already lets null through a non-required field that has no default
    (``prefect.utilities.schema_tools.validation._fix_null_typing``), so nothing valid is lost.
    """
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if not options or len(options) != 2 or NULL not in options:
            continue
        (kept,) = (o for o in options if o != NULL)
        if "type" not in kept:  # a $ref: null would no longer validate on the server, keep the union
            continue
        del prop["anyOf"]
        if kept == {"type": "boolean"}:  # tri-state: auto (None) / on / off, default auto
            prop.update(enum=list(TRI_STATE), default="auto")
            continue
        for key, value in kept.items():
            prop.setdefault(key, value)
        if "default" in prop and prop["default"] is None:
            del prop["default"]


def blank_is_unset(fields: dict[str, Any], values: Any) -> Any:
    """Drop ``""`` for fields whose default is None: a cleared text box in the form means 'not set'."""
    if not isinstance(values, dict):
        return values
    return {k: v for k, v in values.items() if not (v == "" and k in fields and fields[k].default is None)}


def _is_tri_state(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and set(typing.get_args(annotation)) == {
        bool,
        type(None),
    }


def tri_state(fields: dict[str, Any], values: Any) -> Any:
    """The form's ``auto`` / ``on`` / ``off`` as None / True / False for ``bool | None`` fields."""
    if not isinstance(values, dict):
        return values
    return {
        k: TRI_STATE[v]
        if isinstance(v, str) and v in TRI_STATE and k in fields and _is_tri_state(fields[k].annotation)
        else v
        for k, v in values.items()
    }


def as_form(model: Any, values: Any) -> Any:
    """`values` (a JSON dump of pydantic `model`) with each tri-state setting in the form's words
    (null/true/false -> auto/on/off), nested settings blocks included: what an untouched form holds and
    what the server accepts."""
    if not isinstance(values, dict) or not hasattr(model, "model_fields"):
        return values
    words = {value: word for word, value in TRI_STATE.items()}
    out = dict(values)
    for name, field in model.model_fields.items():
        if name not in out:
            continue
        if _is_tri_state(field.annotation) and (out[name] is None or isinstance(out[name], bool)):
            out[name] = words[out[name]]
        elif isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
            out[name] = as_form(field.annotation, out[name])
    return out


def ordered(schema: dict[str, Any], first: tuple[str, ...], titles: dict[str, str]) -> None:
    """Properties in `first` come first (the rest keep their order); `titles` retitles sections."""
    props = schema.get("properties", {})
    head = [k for k in first if k in props]
    schema["properties"] = {k: props[k] for k in head} | {k: v for k, v in props.items() if k not in head}
    for key, title in titles.items():
        if key in schema["properties"]:
            schema["properties"][key]["title"] = title


def expect(condition: dict[str, Any], sentence: str) -> dict[str, Any]:
    """A schema that holds when `condition` holds and otherwise fails with `sentence` as its message.

    JSON Schema has no custom messages, and Prefect's server and form show jsonschema's own ("None is
    not of type 'string'"). A failed ``const`` reads "'<const>' was expected", so the const is the
    sentence: written as what was expected ("an ImageNet val folder in Data → Path, or Demo on").
    """
    return {"if": {"not": condition}, "then": {"const": sentence}}


def refuse_when(schema: dict[str, Any], field: str, value: Any, then: dict[str, Any]) -> None:
    """Add a server-side rule: when `field` equals `value` (its default counts), `then` must hold.

    JSON Schema's if/then (draft 2020-12, which Prefect's validator speaks) so the server refuses
    an inconsistent form before it creates a run; pydantic checks the same rule with a fuller message.
    """
    default = schema.get("properties", {}).get(field, {}).get("default")
    condition: dict[str, Any] = {"properties": {field: {"const": value}}}
    if default != value:
        condition["required"] = [field]  # an absent field takes its default, which is not `value`
    schema.setdefault("allOf", []).append({"if": condition, "then": then})
