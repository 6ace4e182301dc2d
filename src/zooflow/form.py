"""How the settings look as a form in Prefect's UI (its parameter JSON schema) and what a form sends back.

Prefect renders a parameter's JSON schema as the one-off form and validates a run's parameters
against that schema on the server before the run is created. These helpers keep that form plain
(no ``str | None`` switches), ordered as a person fills it in, and strict where the settings are:
a blank field falls back to its default, a blank preset or an inconsistent pair is refused.
"""

from __future__ import annotations

from typing import Any

NULL = {"type": "null"}


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
        for key, value in kept.items():
            prop.setdefault(key, value)
        if "default" in prop and prop["default"] is None:
            del prop["default"]


def blank_is_unset(fields: dict[str, Any], values: Any) -> Any:
    """Drop ``""`` for fields whose default is None: a cleared text box in the form means 'not set'."""
    if not isinstance(values, dict):
        return values
    return {k: v for k, v in values.items() if not (v == "" and k in fields and fields[k].default is None)}


def ordered(schema: dict[str, Any], first: tuple[str, ...], titles: dict[str, str]) -> None:
    """Properties in `first` come first (the rest keep their order); `titles` retitles sections."""
    props = schema.get("properties", {})
    head = [k for k in first if k in props]
    schema["properties"] = {k: props[k] for k in head} | {k: v for k, v in props.items() if k not in head}
    for key, title in titles.items():
        if key in schema["properties"]:
            schema["properties"][key]["title"] = title


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
