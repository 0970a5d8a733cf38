"""Containers for the project's own tests and benchmarks: a Docker Engine (started here when none
answers) and stand-in images, built from Debian's packages, for the upstream images the compose
file names (no image registry is needed)."""
