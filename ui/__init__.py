"""Gradio front end of ResNet Depth Explorer (no model logic, no torch)."""

from .app import build_app
from .common import MAX_FILE_SIZE

__all__ = ["MAX_FILE_SIZE", "build_app"]
