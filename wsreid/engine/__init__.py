"""Training engine: run loop (wsreid.engine.run), data, optimizer, checkpoints, evaluation, logs."""
