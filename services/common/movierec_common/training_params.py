"""The parameters of one training job, with their bounds — written once.

Every entrance uses this model: the catalog's `POST /api/admin/retrain` body (its
`RetrainRequest` is `RetrainParams`), the trainer's `train` / `retrain` command line (argparse
collects, this model validates), the job document's `params` (what the catalog stores is this
model's dump) and the worker (which validates the stored document again before training).
A bad value is refused everywhere with the same message, `validation_message`, e.g.
"invalid request: rank: Input should be greater than or equal to 2".

Every field is optional: None means "the trainer's default" (`als.DEFAULT_EXPLICIT`,
`als.DEFAULT_IMPLICIT`), except `reg`: None means "chosen at every run on validation data
carved from the training ratings" (`movierec_trainer.tune`). `to_explicit()` /
`to_ranking()` are the one conversion to the kernel's parameter objects.

Bounds: rank 2–200 (rank 1 has no room for taste; 200 already costs ~25 MB of factors per
100k users), iterations 1–1000 (the trainer's own long-running tests use 400), regularisation
> 0 (λ = 0 makes rows with fewer ratings than the rank singular), holdout in [0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from movierec_common import als

RANK_MIN, RANK_MAX = 2, 200
ITERATIONS_MAX = 1000


def validation_message(errors: Sequence[Any]) -> str:
    """The one wording of a refused value, from pydantic's `errors()` list: the first error's
    location (without the leading "body") and its message."""
    first = dict(errors[0]) if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"invalid request: {where}: {first.get('msg')}" if where else "invalid request"


class TrainingParams(BaseModel):
    """Model settings of a training job (explicit model, then the ranking model's `ranking_*`)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    rank: int | None = Field(None, ge=RANK_MIN, le=RANK_MAX, examples=[20])
    reg: float | None = Field(
        None,
        gt=0,
        le=10,
        examples=[0.1],
        description="λ, ×n per row; unset: chosen on validation data at every run",
    )
    bias_reg: float | None = Field(None, ge=0, le=1000)
    iterations: int | None = Field(None, ge=1, le=ITERATIONS_MAX, examples=[20])
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    holdout: float | None = Field(None, ge=0, lt=1, description="0 = train on all ratings")
    ranking_rank: int | None = Field(None, ge=RANK_MIN, le=RANK_MAX)
    ranking_reg: float | None = Field(None, gt=0, le=1000)
    ranking_alpha: float | None = Field(None, gt=0, le=1000, description="confidence 1 + α·r")
    ranking_iterations: int | None = Field(None, ge=1, le=ITERATIONS_MAX)
    no_ranking: StrictBool | None = Field(None, description="explicit model only")
    publish_full: StrictBool | None = Field(
        None, description="refit on all ratings after the evaluation and publish that"
    )

    @field_validator("reg", "bias_reg", "holdout", "ranking_reg", "ranking_alpha", mode="before")
    @classmethod
    def _float(cls, v: Any) -> Any:
        if isinstance(v, bool) or (v is not None and not isinstance(v, int | float)):
            raise ValueError("must be a number")
        return None if v is None else float(v)

    def to_explicit(self) -> als.ExplicitParams:
        """The kernel's explicit-model parameters: given values over `als.DEFAULT_EXPLICIT`."""
        given = {
            "rank": self.rank,
            "reg": self.reg,
            "bias_reg": self.bias_reg,
            "iterations": self.iterations,
            "seed": self.seed,
        }
        return replace(als.DEFAULT_EXPLICIT, **{k: v for k, v in given.items() if v is not None})

    def to_ranking(self) -> als.ImplicitParams | None:
        """The ranking model's parameters over `als.DEFAULT_IMPLICIT`; None with `no_ranking`."""
        if self.no_ranking:
            return None
        given = {
            "rank": self.ranking_rank,
            "reg": self.ranking_reg,
            "alpha": self.ranking_alpha,
            "iterations": self.ranking_iterations,
            "seed": self.seed,
        }
        return replace(als.DEFAULT_IMPLICIT, **{k: v for k, v in given.items() if v is not None})


class RetrainParams(TrainingParams):
    """A retrain job: the model settings plus where the ratings come from."""

    db_only: StrictBool = Field(False, description="Train on MongoDB ratings only, no CSV.")
    csv_path: StrictStr | None = Field(
        None, max_length=4096, description="A ratings CSV inside the configured DATA_DIR."
    )
