from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from bnscope.runs.service import RunService


def get_service(request: Request) -> RunService:
    return request.app.state.service


Service = Annotated[RunService, Depends(get_service)]


REPEATABLE_QUERY = {"series"}  # the query parameters a route reads as a list: GET /history?series=a&series=b


def query_given_once(request: Request) -> None:
    """Every request: a query parameter that is not a list, given twice, is a 422 naming it (read as its last
    value, start=1&start=99999999999999999 would pass a bound its first value breaks)."""
    seen: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key in seen and key not in REPEATABLE_QUERY:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("query", key),
                        "input": request.query_params.getlist(key),
                        "msg": f"{key} is given more than once; give it once",
                    }
                ]
            )
        seen.add(key)
