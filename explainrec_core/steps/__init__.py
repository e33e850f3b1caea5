"""Step functions: `fn(cfg, root) -> statistics`. Each writes its outputs atomically under `root`."""
