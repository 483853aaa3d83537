"""Widgets of the terminal interface: each receives data and posts small messages up."""
