"""ResNet Depth Explorer's model zoo: registry, weights, inference, explanations, statistics.

Importing this package loads and downloads nothing.
"""
