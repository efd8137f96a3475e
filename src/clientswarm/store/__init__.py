"""Persistence of clusters, workers, clients, samples and events (SQLAlchemy)."""
