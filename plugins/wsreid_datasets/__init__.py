"""Shipped wsreid plugin."""
