"""The one conversion from a job's validated parameters to the trainer's configuration
(`movierec_trainer.retrain.config_from_params`): what the job says wins, the trainer's
settings fill the rest, and the kernel's defaults fill what neither says."""

from __future__ import annotations

from movierec_common import als
from movierec_common import ease as easelib
from movierec_common.training_params import RetrainParams, TrainingParams
from movierec_trainer.config import TrainerSettings
from movierec_trainer.pipeline import TrainConfig
from movierec_trainer.retrain import config_from_params
from movierec_trainer.tune import EASE_REG_CANDIDATES, RANKING_REG_CANDIDATES, REG_CANDIDATES


def _settings(**values) -> TrainerSettings:
    return TrainerSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_empty_parameters_give_the_kernel_and_trainer_defaults() -> None:
    for publish_full in (False, True):
        settings = _settings(publish_full=publish_full, spark_partitions=None)
        cfg = config_from_params(TrainingParams(), settings, "local")
        assert isinstance(cfg, TrainConfig)
        assert cfg.engine == "local"
        assert cfg.explicit == als.DEFAULT_EXPLICIT and cfg.ranking == als.DEFAULT_IMPLICIT
        assert cfg.holdout == 0.2 and cfg.split_seed == als.DEFAULT_EXPLICIT.seed
        assert cfg.publish_full is publish_full and cfg.num_partitions is None
        # λ left unset is chosen on validation data at every run, among tune's candidates.
        assert cfg.reg_candidates == REG_CANDIDATES and als.DEFAULT_EXPLICIT.reg in REG_CANDIDATES
        # So are the ranking λ (and with it the list's blend weights).
        assert cfg.ranking_reg_candidates == RANKING_REG_CANDIDATES
        assert als.DEFAULT_IMPLICIT.reg in RANKING_REG_CANDIDATES
        # And EASE's λ.
        assert cfg.ease_reg_candidates == EASE_REG_CANDIDATES
        assert easelib.DEFAULT_EASE.reg in EASE_REG_CANDIDATES


def test_job_values_win_and_settings_fill_the_rest() -> None:
    params = RetrainParams.model_validate(
        {"rank": 8, "reg": 0.3, "iterations": 4, "seed": 7, "holdout": 0.1, "db_only": True}
    )
    settings = _settings(publish_full=True, spark_partitions=3)
    cfg = config_from_params(params, settings, "spark")
    assert cfg.engine == "spark" and cfg.num_partitions == 3 and cfg.publish_full is True
    e = cfg.explicit
    assert (e.rank, e.reg, e.iterations, e.seed) == (8, 0.3, 4, 7)
    assert cfg.reg_candidates is None  # a λ the job gives is used as given
    assert cfg.ranking_reg_candidates is None  # no explicit search: no split to search on
    assert cfg.ease_reg_candidates is None
    only_ranking = config_from_params(TrainingParams(ranking_reg=50), settings, "local")
    assert only_ranking.reg_candidates == REG_CANDIDATES
    assert only_ranking.ranking_reg_candidates is None and only_ranking.ranking.reg == 50
    assert cfg.split_seed == 7 and cfg.holdout == 0.1
    assert cfg.ranking is not None and cfg.ranking.seed == 7
    # The job's own publish_full beats the setting; no_ranking drops the ranking model.
    off = config_from_params(TrainingParams(publish_full=False, no_ranking=True), settings, "local")
    assert off.publish_full is False and off.ranking is None


def test_holdout_zero_is_kept_not_replaced_by_the_default() -> None:
    cfg = config_from_params(TrainingParams(holdout=0.0), _settings(), "local")
    assert cfg.holdout == 0.0
