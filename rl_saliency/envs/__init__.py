"""Environments: vectorised Atari, Atari-HEAD replay, toy test envs, and the game registry."""

from rl_saliency.envs.atari import BACKENDS, AleVecEnv, make_atari_vec_env
from rl_saliency.envs.chain import ChainEnv, make_chain_vec_env
from rl_saliency.envs.cue import CueEnv, make_cue_vec_env
from rl_saliency.envs.registry import Game, UnknownGameError, all_games, resolve_game

__all__ = ["BACKENDS", "AleVecEnv", "ChainEnv", "CueEnv", "Game", "UnknownGameError", "all_games",
           "make_atari_vec_env", "make_chain_vec_env", "make_cue_vec_env", "resolve_game"]
