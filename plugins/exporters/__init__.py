"""Built-in exporters (see registry.yaml)."""
