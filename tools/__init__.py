"""Developer tools that are not shipped in the add-on (synthetic data generator)."""
