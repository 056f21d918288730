"""Validation and decoding of what a turn carries: pure functions, bytes in, clean values out."""
