"""Built-in caption generators (see registry.yaml)."""
