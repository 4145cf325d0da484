"""Gradio front end of ResNet Depth Explorer (no model logic, no torch)."""

from .app import build_app, launch_options

__all__ = ["build_app", "launch_options"]
