"""rl-saliency: reinforcement-learning agents that explain themselves."""

__version__ = "0.1.0"
