"""The one JSON encoder: an event as the stream sends it, the store keeps it and a watched run's
sender ships it. Standard library only: the server and a watched run's recording process
(bnscope.watched.process, which never imports torch) both import it."""

import json
import math


def to_json(event: dict) -> str:
    """JSON text for the wire and the store; non-finite floats (a diverging run) become null."""
    try:
        return json.dumps(event, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(event), separators=(",", ":"))


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
