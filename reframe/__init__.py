"""Reframe: render smoother video by synthesizing in-between frames (RIFE) on Ray."""

__version__ = "0.1.0"
