"""temple's built-in plugins, each registered exactly like a third-party one (see registry.yaml)."""
