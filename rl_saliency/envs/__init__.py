"""Environments: vectorised Atari, Atari-HEAD replay, toy test envs, and the game registry."""

from rl_saliency.envs.atari import BACKENDS, AleVecEnv, make_atari_vec_env
from rl_saliency.envs.registry import Game, UnknownGameError, all_games, resolve_game

__all__ = ["BACKENDS", "AleVecEnv", "Game", "UnknownGameError", "all_games", "make_atari_vec_env", "resolve_game"]
