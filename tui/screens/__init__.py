"""Screens of the terminal interface, one module each (product.md §6)."""
