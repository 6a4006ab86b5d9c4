"""JSON parsing that cannot be turned into a 500 by the client."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN/Infinity), plus: absurd nesting is a 400, not a crash.

    ``json`` raises RecursionError (not ValueError) on deeply nested input, which DRF's parser
    does not catch.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
