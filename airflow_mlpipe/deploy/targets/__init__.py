"""Deployment targets: where bentos run and how traffic reaches them."""
