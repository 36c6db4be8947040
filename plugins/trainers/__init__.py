"""Built-in trainers (see registry.yaml)."""
