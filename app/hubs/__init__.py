"""Clusters, communities, hubs and the users of each hub."""
