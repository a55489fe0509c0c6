"""Flow-parameter JSON schemas that accept what the flows accept.

Deployments are created with ``enforce_parameter_schema: true``, so Prefect's server checks every
``create_flow_run`` against the JSON schema generated from the flow's signature. Pydantic writes a
field with ``validation_alias=AliasChoices("duration_s", "duracao")`` under its first name only, and our
models forbid extra keys, so a seed body using ``duracao`` would be refused by the server although the
flow itself accepts it. :data:`SeedImageInput` is ``ImageInput`` with a schema that lists the aliases too.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from worker_image.contract import ImageInput


class AliasesInSchema:
    """A pydantic JSON-schema hook: each ``AliasChoices`` alias of a model field becomes a property too.

    A required field with aliases is no longer listed in ``required``; instead the schema gets
    ``allOf: [{anyOf: [{required: [name]}, {required: [alias]}, ...]}]``, so exactly the bodies the
    model validates pass the schema (validation itself is untouched).

    Args:
        model: The pydantic model whose schema is being generated (``Annotated[model, AliasesInSchema(model)]``).
    """

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """Pydantic's hook: the model's schema with alias properties added (the shared definition is updated)."""
        json_schema = handler(core_schema)
        target = handler.resolve_ref_schema(json_schema)
        properties: dict[str, Any] = target.get("properties", {})
        required: list[str] = target.get("required", [])
        for name, field in self.model.model_fields.items():
            if not isinstance(field.validation_alias, AliasChoices) or name not in properties:
                continue
            alternatives = [c for c in field.validation_alias.choices if isinstance(c, str) and c != name]
            for alias in alternatives:
                properties.setdefault(alias, {**properties[name], "title": f"{alias} (same as {name})"})
            if name in required and alternatives:
                required.remove(name)
                target.setdefault("allOf", []).append(
                    {"anyOf": [{"required": [choice]} for choice in (name, *alternatives)]})
        if not required:
            target.pop("required", None)
        return json_schema


#: ``ImageInput`` for flow signatures: validates exactly like it; its JSON schema also accepts ``duracao``.
SeedImageInput = Annotated[ImageInput, AliasesInSchema(ImageInput)]
