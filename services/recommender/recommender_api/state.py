"""Everything the routes share, built once in create_app and torn down with the app."""

from __future__ import annotations

from dataclasses import dataclass

from movierec_common.account_check import AccountCheck
from pymongo import AsyncMongoClient

from .config import RecommenderSettings
from .experiments import ExperimentRunner
from .impressions import ImpressionRecorder
from .metrics import Metrics
from .model_store import ModelStore
from .movies import MovieCache
from .new_movies import ContentProfiles
from .repository import Repository


@dataclass
class AppState:
    settings: RecommenderSettings
    client: AsyncMongoClient
    repo: Repository
    store: ModelStore
    movies: MovieCache
    metrics: Metrics
    impressions: ImpressionRecorder
    experiments: ExperimentRunner
    content: ContentProfiles
    accounts: AccountCheck
