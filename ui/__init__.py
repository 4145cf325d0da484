"""Gradio front end of ResNet Depth Explorer (no model logic, no torch)."""

from .app import THEME, build_app
from .common import MAX_FILE_SIZE

__all__ = ["MAX_FILE_SIZE", "THEME", "build_app"]
