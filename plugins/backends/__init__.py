"""Built-in backends (see registry.yaml)."""
