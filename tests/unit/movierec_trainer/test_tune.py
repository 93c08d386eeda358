"""The explicit model's λ is chosen on validation carved from the training ratings
(movierec_trainer.tune), so a constant tuned on one data set cannot zero the factors on
another: on the synthetic MovieLens-shaped data ml-latest-small's λ 0.18 leaves the biases
alone."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from movierec_common import als
from movierec_common import ease as easelib
from movierec_trainer import data as tdata
from movierec_trainer import tune
from movierec_trainer.pipeline import TrainConfig, train_job

from scripts.synth_movielens import SynthSpec, write

EXPLICIT_ONLY = TrainConfig(ranking=None, ease=None)


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth")
    write(SynthSpec(n_ratings=300_000, n_users=3_000, n_movies=2_000, seed=11), out)
    return tdata.load_dataset_dir(out)


@pytest.fixture(scope="module")
def synthetic(synthetic_dataset):
    return synthetic_dataset.ratings


@pytest.fixture(scope="module")
def synthetic_genres(synthetic_dataset) -> dict[int, list[str]]:
    """movieId → genres of the synthetic catalogue (correlated with the movies' factors)."""
    return {m.movieId: m.genres for m in synthetic_dataset.movies}


def test_the_lowest_validation_rmse_wins_and_every_candidate_is_reported(synthetic) -> None:
    seen: list[str] = []
    entries: list[dict] = []
    search = tune.choose_explicit_reg(
        synthetic,
        EXPLICIT_ONLY,
        progress=lambda model, entry: (seen.append(model), entries.append(entry)),
    )
    regs = [row["reg"] for row in search.rows]
    assert regs[: len(tune.REG_CANDIDATES)] == sorted(tune.REG_CANDIDATES)
    best = min(search.rows, key=lambda row: row["valid_rmse"])
    assert search.reg == best["reg"]
    # Each candidate's iterations were reported under its own name (the job API, the console).
    assert seen.count(f"explicit λ {regs[0]:g}") == tune.SEARCH_ITERATIONS
    assert all(e["valid_rmse"] is not None for e in entries)  # each iteration's validation
    assert search.n_valid >= tune.MIN_VALID_RATINGS and search.skipped is None


def test_on_synthetic_data_a_smaller_lambda_keeps_the_factors_alive(synthetic) -> None:
    """At λ 0.18 the factors die (train RMSE = the biases alone); the search finds that."""
    search = tune.choose_explicit_reg(synthetic, EXPLICIT_ONLY)
    by_reg = {row["reg"]: row for row in search.rows}
    assert search.reg < als.DEFAULT_EXPLICIT.reg
    assert by_reg[search.reg]["valid_rmse"] < by_reg[0.18]["valid_rmse"] - 0.005
    assert by_reg[search.reg]["train_rmse"] < by_reg[0.18]["train_rmse"] - 0.02


def test_a_best_at_the_end_of_the_grid_is_followed_beyond_it(synthetic) -> None:
    """Only the two largest candidates given: the search steps down by their ratio while the
    validation RMSE improves, and stops at the first step that does not."""
    search = tune.choose_explicit_reg(synthetic, EXPLICIT_ONLY, (0.18, 0.255))
    regs = [row["reg"] for row in search.rows]
    assert regs[:2] == [0.18, 0.255] and len(regs) > 3
    assert all(a > b for a, b in itertools.pairwise(regs[2:]))  # downwards, in order
    assert search.reg < 0.18 and search.reg in regs[2:]
    rmse = {row["reg"]: row["valid_rmse"] for row in search.rows}
    if len(regs) < 2 + tune.MAX_EXTENSIONS:  # stopped early: the last step did not improve
        assert rmse[regs[-1]] >= rmse[search.reg]


def test_ml_latest_small_keeps_the_lambda_chosen_there(movielens_dir: Path) -> None:
    """The search's own split of ml-latest-small's training part picks the λ that the
    validation study chose (bench/tune_models.py), so the shipped metrics stand."""
    ratings = tdata.load_ratings_dir(movielens_dir)
    train = tdata.random_holdout(ratings, 0.2, 42).train
    assert tune.choose_explicit_reg(train, EXPLICIT_ONLY).reg == 0.18


def test_too_few_ratings_keep_the_given_lambda_and_say_why() -> None:
    rng = np.random.default_rng(0)
    n = 2_000  # 400 carved validation ratings < MIN_VALID_RATINGS
    ratings = tdata.make_ratings(
        rng.integers(1, 60, n), rng.integers(1, 80, n), rng.integers(1, 11, n) / 2.0
    )
    cfg = replace(EXPLICIT_ONLY, explicit=replace(als.DEFAULT_EXPLICIT, reg=0.3))
    search = tune.choose_explicit_reg(ratings, cfg)
    assert search.reg == 0.3 and search.rows == [] and "validation ratings" in search.skipped


def test_a_cancel_during_the_search_stops_the_job_before_the_fit(synthetic) -> None:
    class Cancelled(Exception):
        pass

    def cancel(model: str, entry: dict) -> None:
        if model == "explicit λ 0.09" and entry["iteration"] == 2:
            raise Cancelled

    cfg = replace(EXPLICIT_ONLY, reg_candidates=tune.REG_CANDIDATES)
    phases: list[str] = []
    with pytest.raises(Cancelled):
        train_job(synthetic, cfg, progress=cancel, phase=phases.append)
    assert phases == ["tune"]  # the model fit never started


def test_a_candidate_that_diverges_is_skipped_not_fatal(synthetic, monkeypatch) -> None:
    real = tune.fit_models

    def diverging_at_smallest(ratings, cfg, **kw):
        if cfg.explicit.reg == min(tune.REG_CANDIDATES):
            raise als.TrainingDivergedError("factors exploded at iteration 3 (injected)")
        return real(ratings, cfg, **kw)

    monkeypatch.setattr(tune, "fit_models", diverging_at_smallest)
    search = tune.choose_explicit_reg(synthetic, EXPLICIT_ONLY)
    assert "injected" in search.rows[0]["error"] and search.reg != min(tune.REG_CANDIDATES)
    assert len([r for r in search.rows if "valid_rmse" in r]) == len(tune.REG_CANDIDATES) - 1
    monkeypatch.setattr(
        tune, "fit_models", lambda *_a, **_k: (_ for _ in ()).throw(als.TrainingDivergedError("x"))
    )
    with pytest.raises(als.TrainingDivergedError, match="every λ candidate diverged"):
        tune.choose_explicit_reg(synthetic, EXPLICIT_ONLY)


def test_train_job_publishes_the_chosen_lambda_and_the_search(synthetic) -> None:
    given_reg = replace(als.DEFAULT_EXPLICIT, reg=0.5)  # not a candidate: replaced
    cfg = replace(EXPLICIT_ONLY, explicit=given_reg, reg_candidates=(0.09, 0.18))
    phases: list[str] = []
    out = train_job(synthetic, cfg, phase=phases.append)
    tuning = out.manifest["tuning"]["explicit_reg"]
    assert phases[:2] == ["tune", "train"]
    assert [row["reg"] for row in tuning["candidates"]][:2] == [0.09, 0.18]
    best = min(tuning["candidates"], key=lambda row: row["valid_rmse"])["reg"]
    assert out.manifest["params"]["explicit"]["reg"] == tuning["chosen"] == best
    assert out.phases["tune_s"] > 0
    # The search carves its validation part from the training part only: the evaluation
    # holdout (20 % of all ratings) is never among the ratings it fits or scores.
    assert tuning["n_fit"] + tuning["n_valid"] <= 0.8 * len(synthetic) + 1
    # A λ the caller gives (config_from_params leaves reg_candidates None then) is used as is.
    given = train_job(synthetic, replace(EXPLICIT_ONLY, explicit=given_reg))
    assert given.manifest["tuning"] == {} and given.manifest["params"]["explicit"]["reg"] == 0.5
    assert "tune_s" not in given.phases


def test_the_ease_rating_weight_is_chosen_on_the_same_validation(synthetic) -> None:
    """The served stars' EASE term (r̂ + γ·(d_u·B)_i): on the synthetic data, where it does
    not help, γ ends far below ml-latest-small's 4.5 and never scores worse than no term."""
    cfg = TrainConfig(reg_candidates=tune.REG_CANDIDATES)
    search = tune.choose_explicit_reg(synthetic, cfg)
    choice = tune.choose_rating_weight(search, cfg)
    assert choice is not None
    rmse = {row["rating"]: row["valid_rmse"] for row in choice.rows}
    assert 0.0 in rmse and choice.rating in rmse
    assert rmse[choice.rating] == min(rmse.values()) <= rmse[0.0]
    assert choice.rating <= 1.5 * choice.least_squares + 1e-9
    assert choice.rating < 1.0 < easelib.DEFAULT_BLEND.rating
    assert choice.n_valid == search.n_valid and choice.ease_items > 0
    # Nothing to choose without EASE, or when the search was skipped (too little data).
    assert tune.choose_rating_weight(search, replace(cfg, ease=None)) is None
    assert tune.choose_rating_weight(replace(search, fit=None), cfg) is None


def test_ml_latest_small_keeps_the_rating_weight_chosen_there(movielens_dir: Path) -> None:
    """On ml-latest-small's training part the least-squares γ lands where the validation
    study put it (4.5, bench/tune_models.py): the shipped served RMSE stands."""
    ratings = tdata.load_ratings_dir(movielens_dir)
    train = tdata.random_holdout(ratings, 0.2, 42).train
    cfg = TrainConfig(reg_candidates=tune.REG_CANDIDATES)
    choice = tune.choose_rating_weight(tune.choose_explicit_reg(train, cfg), cfg)
    assert choice is not None and 4.0 <= choice.rating <= 5.0


def test_train_job_serves_the_chosen_rating_weight_uncapped(synthetic) -> None:
    cfg = TrainConfig(reg_candidates=(0.09, 0.18), ranking=replace(als.DEFAULT_IMPLICIT, rank=8))
    out = train_job(synthetic, cfg)
    chosen = out.manifest["tuning"]["ease_rating_weight"]["chosen"]
    assert out.manifest["params"]["blend"]["rating"] == chosen  # not re-capped by the fit
    assert out.metrics["rmse"] <= out.metrics["explicit_only_rmse"] + 0.002


def test_walk_grid_steps_beyond_the_end_that_wins_and_stops_where_it_turns() -> None:
    tried: list[float] = []
    loss = {}

    def score(value: float) -> bool:
        tried.append(value)
        loss[value] = abs(np.log(value / 270.0))  # optimum at 270, beyond the grid's 90
        return True

    order = tune.walk_grid((90.0, 10.0, 30.0), score, lambda: min(loss, key=loss.get))
    assert order == tried and tried[:3] == [10.0, 30.0, 90.0]
    assert tried[3:] == [pytest.approx(270.0), pytest.approx(810.0)]  # 810 worse: stop
    # A value that cannot be scored ends the walk outwards.
    tried.clear(), loss.clear()
    tune.walk_grid((10.0, 30.0, 90.0), lambda v: score(v) and v < 100, lambda: 90.0)
    assert tried == [10.0, 30.0, 90.0, pytest.approx(270.0)]
    with pytest.raises(ValueError, match="no candidates"):
        tune.walk_grid((), score, lambda: None)


SMALL_RANKING = TrainConfig(
    reg_candidates=(0.09,),
    ranking=replace(als.DEFAULT_IMPLICIT, rank=16),
    ranking_reg_candidates=tune.RANKING_REG_CANDIDATES,
    ease_reg_candidates=tune.EASE_REG_CANDIDATES,
)


@pytest.fixture(scope="module")
def synthetic_search(synthetic):
    return tune.choose_explicit_reg(synthetic, SMALL_RANKING, (0.09,))


def _scored_and_expected(rows: list[dict], given: float) -> tuple[dict[float, float], float]:
    """A λ search's rows as λ → validation NDCG, and the λ the tie rule must choose, written
    out here rather than taken from the code under test: the one nearest `given` (log scale)
    among those within the tolerance of the best (so a plateau does not walk λ outwards)."""
    ndcg = {row["reg"]: row["valid_ndcg"] for row in rows if "valid_ndcg" in row}
    top = max(ndcg.values())
    near = [reg for reg, nd in ndcg.items() if nd >= top * (1 - tune.NDCG_TOLERANCE)]
    return ndcg, min(near, key=lambda reg: abs(np.log(reg / given)))


def test_the_ranking_lambda_is_chosen_by_validation_ndcg(synthetic_search) -> None:
    """On the synthetic data (150 ratings per movie) ml-latest-small's λ 30 ranks worse than a
    larger λ; the search finds that, reports every candidate, and keeps the chosen fit."""
    seen: list[str] = []
    ranked = tune.choose_ranking_reg(
        synthetic_search, SMALL_RANKING, progress=lambda model, _e: seen.append(model)
    )
    assert ranked is not None and ranked.model is not None
    ndcg, expected = _scored_and_expected(ranked.rows, 30.0)
    assert list(ndcg)[:3] == list(tune.RANKING_REG_CANDIDATES)
    assert max(ndcg.values()) > ndcg[30.0] + 0.005 and ranked.reg > 30.0
    assert ranked.reg == expected
    assert seen.count("ranking λ 30") == tune.RANKING_SEARCH_ITERATIONS
    # The kept fit is the chosen candidate's: it scores the reported NDCG again.
    ev = tune.validation_evaluator(synthetic_search)
    again = ev.topn(lambda u: ranked.model.X[u] @ ranked.model.Y.T).ndcg_at_k
    assert round(again, 5) == ndcg[ranked.reg]
    assert tune.choose_ranking_reg(synthetic_search, replace(SMALL_RANKING, ranking=None)) is None


def test_the_ease_lambda_is_chosen_by_validation_ndcg(synthetic_search) -> None:
    """On the synthetic data (150 ratings per movie) ml-latest-small's EASE λ 800 ranks worse
    than a larger λ (synthetic-1m: validation NDCG@10 0.0466 against 0.0577 at 51,200); the
    search walks up to it, reports every candidate and keeps the chosen model."""
    eased = tune.choose_ease_reg(synthetic_search, SMALL_RANKING)
    assert eased is not None and eased.model is not None
    ndcg, expected = _scored_and_expected(eased.rows, 800.0)
    assert list(ndcg)[:3] == list(tune.EASE_REG_CANDIDATES)
    assert max(ndcg.values()) > ndcg[800.0] + 0.002 and eased.reg > 800.0
    assert eased.reg == expected
    assert eased.model.params.reg == eased.reg and eased.ease_items == eased.model.items.size
    # The kept model is the chosen candidate's: the same validation users score it again.
    inter = synthetic_search.fit.inter
    csr = als.to_csr(inter.user_idx, inter.item_idx, inter.rating, inter.n_users)
    ev = tune.validation_evaluator(synthetic_search, tune.BLEND_MAX_USERS)
    again = ev.topn(lambda u: easelib.batch_scores(eased.model, u, *csr, inter.n_items)[0])
    assert round(again.ndcg_at_k, 5) == ndcg[eased.reg]
    # Nothing to choose without EASE (nor without the ranking model, which is what EASE is
    # served beside), or without the search's split.
    assert tune.choose_ease_reg(synthetic_search, replace(SMALL_RANKING, ease=None)) is None
    assert tune.choose_ease_reg(synthetic_search, replace(SMALL_RANKING, ranking=None)) is None
    assert tune.choose_ease_reg(replace(synthetic_search, fit=None), SMALL_RANKING) is None


def test_nearest_within_keeps_the_given_value_on_a_plateau() -> None:
    tol = tune.NDCG_TOLERANCE
    assert tune.nearest_within({}, 30.0) is None
    # 300 is best, 100 within the tolerance of it and nearer the given 30: 100 wins.
    assert tune.nearest_within({30.0: 0.5, 100.0: 0.6 * (1 - tol / 2), 300.0: 0.6}, 30.0) == 100
    # Nothing else within the tolerance: the best wins.
    assert tune.nearest_within({30.0: 0.5, 100.0: 0.6 * (1 - 2 * tol), 300.0: 0.6}, 30.0) == 300


def _served_ndcg(search, ranked, cfg, blend, ease_model, genres_of=None) -> float:
    """The validation NDCG@10 of `blend` scored by the trainer's served path
    (`pipeline.served_scores`), not by the tuner's own cached parts."""
    from movierec_trainer import pipeline

    fit = replace(search.fit, ranking=ranked.model, ease=ease_model, blend=blend)
    fit = pipeline.with_genres(fit, genres_of)
    ev = tune.validation_evaluator(search, tune.BLEND_MAX_USERS)
    return ev.topn(pipeline.served_scores(fit)).ndcg_at_k


def test_the_tuners_blend_scores_are_the_served_lists(synthetic_search, synthetic_genres) -> None:
    """The ascent scores weights on cached, standardised parts; the served scoring path
    (`pipeline.served_scores`, what `evaluate_fit` and the recommender rank by) must give the
    same NDCG for the same weights, popularity and genre parts included."""
    cfg = SMALL_RANKING
    ranked = tune.choose_ranking_reg(synthetic_search, cfg)
    model = easelib.fit_ease(synthetic_search.fit.inter, cfg.ease)
    bp = tune.blend_parts(synthetic_search, ranked, cfg, model, synthetic_genres)
    assert bp is not None and bp.users.size == tune.BLEND_MAX_USERS and bp.has_genre
    for weights in [
        (0.8, 0.2, 0.4, 0.0, 0.3),
        (0.5, 0.3, 0.7, 0.4, 0.0),
        (1.0, 0.0, 0.2, -0.3, 0.8),
    ]:
        blend = replace(cfg.blend, **dict(zip(tune.BLEND_PARTS, weights, strict=True)))
        served = _served_ndcg(synthetic_search, ranked, cfg, blend, model, synthetic_genres)
        assert float(bp.ndcg(weights).mean()) == pytest.approx(served, abs=2e-4), weights
    # The popularity and genre weights really change the list (no part silently dropped).
    for moved in [(0.8, 0.2, 0.4, 1.0, 0.3), (0.8, 0.2, 0.4, 0.0, 1.0)]:
        changed = bp.ndcg(moved) != bp.ndcg((0.8, 0.2, 0.4, 0.0, 0.3))
        assert changed.mean() > 0.1, moved
    choice = tune.choose_blend(synthetic_search, ranked, cfg, model, genres_of=synthetic_genres)
    assert choice is not None
    assert all(step["gain"] > tune.BLEND_GATE * step["se"] for step in choice.path)
    assert choice.describe()["chosen"] == {k: getattr(choice.blend, k) for k in tune.BLEND_PARTS}
    assert choice.blend.rating == cfg.blend.rating  # the stars' γ is not the blend's to move


def test_without_genres_the_genre_weight_is_not_searched(synthetic_search) -> None:
    """Data without a catalogue's genres has no genre part: its weight is neither scored nor
    moved (a move there could only be noise), the parts hold none, and the chosen weight is 0."""
    cfg = SMALL_RANKING
    ranked = tune.choose_ranking_reg(synthetic_search, cfg)
    model = easelib.fit_ease(synthetic_search.fit.inter, cfg.ease)
    bp = tune.blend_parts(synthetic_search, ranked, cfg, model)
    assert bp is not None and not bp.has_genre and bp.parts.shape[0] == 4
    seen: list[tuple[float, ...]] = []

    def score(w: tuple[float, ...]) -> np.ndarray:
        seen.append(w)
        return bp.ndcg(w)

    start = tuple(float(getattr(cfg.blend, k)) for k in tune.BLEND_PARTS)
    tune.blend_ascent(score, start, frozen=frozenset({"genre"}))
    assert len(seen) > 1 and {w[4] for w in seen} == {start[4]}
    choice = tune.choose_blend(synthetic_search, ranked, cfg, model)
    assert choice is not None and choice.blend.genre == 0.0 < cfg.blend.genre
    assert choice.describe()["start"]["genre"] == 0.0


START = (0.8, 0.2, 0.4, 0.0, 0.3)  # the shipped weights, BLEND_PARTS order


def _toy_scores(effect: dict[int, float], n_users: int = 800, seed: int = 0):
    """Per-user NDCG-like scores for weight vectors: each user's base, plus effect[c] × the
    change of weight c (a real effect, the same sign for every user on average), plus noise
    that depends on the weights (what a noisy validation set adds)."""
    rng = np.random.default_rng(seed)
    base = rng.random(n_users) * 0.3

    def score(w: tuple[float, ...]) -> np.ndarray:
        key = abs(hash(tuple(round(x, 4) for x in w))) % (2**32)
        noise = np.random.default_rng([seed, key]).normal(0, 0.05, n_users)
        real = sum(effect.get(c, 0.0) * (w[c] - START[c]) for c in range(len(START)))
        return base + real + noise

    return score


def test_the_ascent_follows_a_real_gain_and_stops_at_noise() -> None:
    start = START
    # A strong real gain in the popularity weight (up to its bound), none elsewhere.
    weights, _, path = tune.blend_ascent(_toy_scores({3: 0.2}), start)
    assert weights[3] == tune.BLEND_BOUNDS["popularity"][1]
    assert weights[:3] == start[:3] and weights[4] == start[4]
    assert len(path) == 10 and all(p["gain"] > tune.BLEND_GATE * p["se"] for p in path)
    # No real effect anywhere: the best of each round's noise rarely clears the gate.
    moved = [bool(tune.blend_ascent(_toy_scores({}, seed=s), start)[2]) for s in range(20)]
    assert sum(moved) <= 3, moved


def test_train_job_serves_the_chosen_ranking_lambda_and_blend(synthetic) -> None:
    out = train_job(synthetic, SMALL_RANKING)
    tuning, params = out.manifest["tuning"], out.manifest["params"]
    assert params["ranking"]["reg"] == tuning["ranking_reg"]["chosen"] > 30.0
    assert {k: params["blend"][k] for k in tune.BLEND_PARTS} == tuning["blend"]["chosen"]
    assert params["blend"]["rating"] == tuning["ease_rating_weight"]["chosen"]
    assert params["ease"]["reg"] == tuning["ease_reg"]["chosen"] > easelib.DEFAULT_EASE.reg
    # The served list beats popularity on the held-out part: λ 30 with the shipped weights
    # did not on data like this (synthetic-1m: 0.0604 against 0.0601).
    assert out.metrics["ndcg_at_10"] > out.metrics["popularity_ndcg_at_10"] + 0.01
    # Without candidates the ranking λ and the weights are the ones given.
    fixed = train_job(
        synthetic,
        replace(SMALL_RANKING, ranking_reg_candidates=None, ease_reg_candidates=None),
    )
    assert not {"ranking_reg", "blend", "ease_reg"} & set(fixed.manifest["tuning"])
    assert fixed.manifest["params"]["ranking"]["reg"] == als.DEFAULT_IMPLICIT.reg
    assert fixed.manifest["params"]["ease"]["reg"] == easelib.DEFAULT_EASE.reg


def test_an_explicit_only_job_searches_no_ease_lambda(synthetic) -> None:
    """`--no-ranking` publishes the explicit model alone: no EASE is fitted, so none is tuned
    and the manifest names none."""
    cfg = replace(SMALL_RANKING, ranking=None, ranking_reg_candidates=None)
    out = train_job(synthetic, cfg)
    assert set(out.manifest["tuning"]) == {"explicit_reg"}
    assert out.manifest["params"]["ease"] is None and out.manifest["params"]["ranking"] is None


def test_ml_latest_small_keeps_the_ranking_lambda_chosen_there(movielens_dir: Path) -> None:
    """On ml-latest-small's training part the search keeps λ 30, the value the validation
    study chose (bench/tune_models.py)."""
    ratings = tdata.load_ratings_dir(movielens_dir)
    train = tdata.random_holdout(ratings, 0.2, 42).train
    cfg = TrainConfig(reg_candidates=(0.18,), ranking_reg_candidates=tune.RANKING_REG_CANDIDATES)
    search = tune.choose_explicit_reg(train, cfg, (0.18,))
    ranked = tune.choose_ranking_reg(search, cfg)
    assert ranked is not None and ranked.reg == als.DEFAULT_IMPLICIT.reg
    # Likewise EASE's λ 800 (validation NDCG@10 of EASE alone: 0.1868 / 0.1906 / 0.1768 at
    # 200 / 800 / 3200).
    eased = tune.choose_ease_reg(search, cfg)
    assert eased is not None and eased.reg == easelib.DEFAULT_EASE.reg
    # And the blend, genre part included: the ascent keeps the shipped weights (the genre
    # weight 0.3 was chosen on 12 validation carves, bench/tune_genres.py).
    movies = tdata.load_dataset_dir(movielens_dir).movies
    genres_of = {m.movieId: m.genres for m in movies}
    choice = tune.choose_blend(search, ranked, cfg, eased.model, genres_of=genres_of)
    assert choice is not None and choice.path == []
    assert choice.blend == cfg.blend and choice.blend.genre == 0.3
