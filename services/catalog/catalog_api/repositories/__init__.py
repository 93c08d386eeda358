"""The only code that issues MongoDB queries. Routes call these; nothing else touches `db`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pymongo import AsyncMongoClient

from ..core.active_model import ActiveModelItems
from .admin_movies import AdminMoviesRepo
from .experiments import ExperimentsRepo
from .health import HealthRepo
from .jobs import JobsRepo
from .movies import MoviesRepo
from .ratings import RatingsRepo
from .stats import StatsReconciler
from .users import UsersRepo


@dataclass(frozen=True)
class Repos:
    users: UsersRepo
    movies: MoviesRepo
    ratings: RatingsRepo
    jobs: JobsRepo
    health: HealthRepo
    stats: StatsReconciler
    experiments: ExperimentsRepo
    admin_movies: AdminMoviesRepo


def make_repos(
    client: AsyncMongoClient,
    db_name: str,
    prior_weight: float,
    slot_stale_seconds: float,
    movies_refresh_seconds: float = 5.0,
    stats_stale_seconds: float = 60.0,
    stats_dead_grace_seconds: float = 2.0,
    model_dir: str | Path | None = None,
) -> Repos:
    db = client[db_name]
    active = ActiveModelItems(model_dir)
    movies = MoviesRepo(db, prior_weight, movies_refresh_seconds, active)
    stats = StatsReconciler(db, movies, stats_stale_seconds, stats_dead_grace_seconds)
    return Repos(
        health=HealthRepo(client),
        users=UsersRepo(db),
        movies=movies,
        ratings=RatingsRepo(db, movies, stats),
        jobs=JobsRepo(db, slot_stale_seconds),
        stats=stats,
        experiments=ExperimentsRepo(db),
        admin_movies=AdminMoviesRepo(db, prior_weight),
    )
