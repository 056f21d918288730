"""Parley on Ray Serve (optional extra `ray`): see deploy/ray/app.py."""
