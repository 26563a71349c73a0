"""k-means in JAX: greedy k-means++ seeding and Lloyd iterations (public API)."""

from jaxem._src.kmeans import KMeansResult, kmeans, kmeans_plusplus, lloyd, nearest

__all__ = ["KMeansResult", "kmeans", "kmeans_plusplus", "lloyd", "nearest"]
