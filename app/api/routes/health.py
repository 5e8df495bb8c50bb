"""The health badges' rules (bnscope.health), served so the page judges with the same numbers."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from bnscope.health import rules_json

router = APIRouter(prefix="/api/health", tags=["health"])

Bound = float | None  # None: unbounded on that side


class RuleOut(BaseModel):
    id: str = Field(description="the rule: its quantity, prefixed by its activation family where several judge it")
    quantity: str = Field(description="saturation, dead, activation_std, gradient_flow or update_to_data")
    kinds: list[str] = Field(description="the activation kinds it was calibrated on, and judges (no other)")
    title: str
    panel: str = Field(description="id of the page's panel that shows the quantity")
    measure: str = Field(description="what the value is, and its unit")
    amber: tuple[Bound, Bound] = Field(description="[lo, hi]: ok inside (bounds included), amber outside")
    red: tuple[Bound, Bound] = Field(description="[lo, hi]: amber inside, red outside")
    explain: str
    source: str = Field(description="where the thresholds come from")


class RulesOut(BaseModel):
    rules: list[RuleOut]


@router.get("/rules", response_model=RulesOut)
def health_rules():
    """Every health rule with its thresholds, in the order the badges are shown."""
    return {"rules": rules_json()}
