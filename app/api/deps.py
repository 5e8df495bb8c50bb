from typing import Annotated

from fastapi import Depends, Request

from bnscope.runs.service import RunService


def get_service(request: Request) -> RunService:
    return request.app.state.service


Service = Annotated[RunService, Depends(get_service)]
