"""Schemathesis hooks for ``test_openapi.py``: keep generated mint bodies to what JSON Schema
can say. ``check_params`` holds the rules it cannot express (unique tool names, byte sizes
of UTF-8 text and of metadata as JSON, tool parameters of type object); bodies breaking one
of those are refused with 422 by design, so they are not "schema-valid requests wrongly
rejected". Every other body goes through, positive and negative."""

from __future__ import annotations

import msgspec
import schemathesis

from speko_bridge.api import integral_floats_as_ints
from speko_bridge.params import ParamsError, SessionParams, check_params


@schemathesis.hook
def filter_body(ctx, body) -> bool:
    if isinstance(body, dict):
        body = dict(body)
        integral_floats_as_ints(body)  # as the API does
    try:
        params = msgspec.convert(body, SessionParams)
    except (msgspec.ValidationError, TypeError):
        return True  # not a valid body by the schema's own rules: keep it (negative tests)
    try:
        check_params(params)
    except ParamsError:
        return False
    return True
