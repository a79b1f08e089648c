"""Response models: the JSON each route answers, as pydantic models, from which the OpenAPI
document (api/http/openapi.py) takes its schemas. One module per group of routes;
`common` holds what several share (the error body, a command's answer, the envelope)."""

from api.http.models.common import ErrorBody

__all__ = ["ErrorBody"]
