"""RFC 9457 problem+json responses: the only shape an API error takes."""

import json

from flask import Response

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raise from anywhere in a request to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str = "about:blank",
        errors: dict | None = None,
        headers: dict | None = None,
        **extra,
    ):
        super().__init__(detail)
        self.status, self.detail, self.type, self.errors = status, detail, type_, errors
        self.headers, self.extra = headers or {}, extra


def not_found() -> Problem:
    # One wording for "does not exist" and "not yours to see" (docs/API.md, "Need to know").
    return Problem(404, "No such resource.")


def invalid(errors: dict, detail: str = "The request has invalid fields.") -> Problem:
    return Problem(422, detail, errors=errors)


def response(status: int, detail: str, *, type_="about:blank", errors=None, headers=None, extra=None) -> Response:
    body = {"type": type_, "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    resp = Response(
        json.dumps(body, ensure_ascii=False, default=str), status=status, mimetype="application/problem+json"
    )
    resp.headers.update(headers or {})
    return resp


def from_problem(p: Problem) -> Response:
    return response(p.status, p.detail, type_=p.type, errors=p.errors, headers=p.headers, extra=p.extra)
