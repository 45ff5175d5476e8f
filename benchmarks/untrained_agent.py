"""Save an *untrained* agent of a spec as a run folder (model.zip + config.yaml): the chance-level reference
for a trained agent's saliency (same architecture, same initialisation seed, same receptive-field projection).

    python benchmarks/untrained_agent.py --agent fls_sparse --game ms_pacman --seed 0 --out runs/untrained/fls_sparse
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_saliency import io
from rl_saliency.agents.spec import load_spec
from rl_saliency.envs import make_atari_vec_env, resolve_game


def save_untrained(agent: str, game: str, seed: int, out: Path) -> Path:
    spec, game_obj = load_spec(agent), resolve_game(game)
    venv = make_atari_vec_env(game_obj.name, 1, seed=seed)
    model = spec.build_model(spec.wrap_env(venv), seed=seed, device="cpu")
    venv.close()
    io.write_yaml(out / "config.yaml", {"game": game_obj.name, "gym_id": game_obj.gym_id, "seed": seed,
                                        "timesteps": 0, "n_envs": 1, "backend": "ale", "device": "cpu",
                                        "checkpoint_freq": 1, "algo": spec.algo, "spec_path": spec.path,
                                        "spec": spec.to_dict()})
    io.atomic_write(out / "model.zip", lambda tmp: model.save(tmp))
    return out / "model.zip"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="fls_sparse")
    parser.add_argument("--game", default="ms_pacman")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(save_untrained(args.agent, args.game, args.seed, args.out))
