"""Gradio front end of ResNet Depth Explorer (no model logic, no torch)."""

from .app import MAX_FILE_SIZE, build_app

__all__ = ["MAX_FILE_SIZE", "build_app"]
