"""The catalog API: accounts and login, movies, ratings, popularity, and the admin routes
(retrain jobs, model versions). The only service that writes users and ratings."""
