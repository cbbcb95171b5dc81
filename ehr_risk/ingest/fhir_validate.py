"""`--validate`: full structural validation of each resource with the fhir.resources R4B models.

R4B is the R4-compatible model set shipped by fhir.resources 8 (R4 itself is no longer packaged); the
resources this project reads are unchanged between R4 and R4B. The reject reason is the first validation
error's location and message (pydantic messages name the rule broken, not the offending value), cut to a
bounded length. Roughly 3-8k resources/s, so it is opt-in.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_MAX_REASON = 160


class Validator:
    def __init__(self) -> None:
        from fhir.resources.R4B import get_fhir_model_class

        self._get = get_fhir_model_class
        self._models: dict[str, Any] = {}

    def _model(self, resource_type: str) -> Any:
        if resource_type not in self._models:
            try:
                self._models[resource_type] = self._get(resource_type)
            except (KeyError, ValueError, ImportError, AttributeError):
                self._models[resource_type] = None
        return self._models[resource_type]

    def problem(self, resource: dict[str, Any]) -> str | None:
        """None when `resource` is valid, else a value-free reason."""
        rt = str(resource.get("resourceType"))
        model = self._model(rt)
        if model is None:
            return "FHIR validation: unknown resource type"
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            if not errors:
                return "FHIR validation: invalid resource"
            first = errors[0]
            loc = ".".join(str(p) for p in first.get("loc", ())) or rt
            msg = str(first.get("msg", "invalid")).splitlines()[0]
            return f"FHIR validation: {loc}: {msg}"[:_MAX_REASON]
        except (ValueError, TypeError) as exc:
            return f"FHIR validation: {type(exc).__name__}"
        return None
