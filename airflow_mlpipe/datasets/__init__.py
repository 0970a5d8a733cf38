"""Reference datasets generated on the fly (seeded, nothing downloaded) for examples, demos and tests."""
