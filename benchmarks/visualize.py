"""Seconds per visualised action (and per fooled observation, per generator training step), CPU or GPU.

    python benchmarks/visualize.py [--policies nature fls] [--game ms_pacman] [--repeats 3] [--threads 1]
        [--device cpu|cuda] [--model ZIP ...]

Each policy is a PPO ``CnnPolicy`` for the game's action count (NatureCNN, Sparse FLS), untrained: the speed does
not depend on the weights; ``--model`` adds trained zips. One call visualises every action of the game at the
command's defaults (200 Adam steps, jitter 2, blur every 4 steps, all actions in one batch) and the time is divided
by the number of actions; fooling: seconds per observation for 8 observations (line search up to 64 grey levels,
20 signed-gradient steps per bound; observations played by the agent); generator: seconds per training step at
batch 64 (including the one-off encoding of the 72 observations) and per action maximised over the code
(200 steps). Wall clock and CPU seconds of this process (less
sensitive to other jobs on a shared machine) are both printed: the median over ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from stable_baselines3 import PPO

from rl_saliency.envs import make_atari_vec_env
from rl_saliency.saliency.sanity import collect_observations
from rl_saliency.visualize import get_visualizer
from rl_saliency.visualize.generator import GeneratorConfig, GeneratorVisualizer, train_generator


def build(policy: str, venv, device: str) -> PPO:
    kwargs = {}
    if policy == "fls":
        from rl_saliency.agents.extractors import SparseFLS, paper_policy_kwargs

        kwargs = paper_policy_kwargs(SparseFLS)
    return PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device=device, seed=0, policy_kwargs=kwargs)


def timed(call: Callable[[], object], repeats: int, sync: bool) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``repeats`` calls after one warm-up call."""
    call()
    walls, cpus = [], []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        if sync:
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["nature", "fls"])
    parser.add_argument("--model", nargs="*", default=[], help="trained zips to time as well")
    parser.add_argument("--game", default="ms_pacman")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--generator-steps", type=int, default=10, help="training steps timed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sync = args.device.startswith("cuda")
    venv = make_atari_vec_env(args.game, n_envs=1, seed=0, training=False)
    models = {name: build(name, venv, args.device) for name in args.policies}
    if args.model:
        from rl_saliency.models import load_model

        models.update({path: load_model(path, device=args.device) for path in args.model})
    venv.close()
    print(f"game {args.game}, device {args.device}, torch threads {args.threads}, median of {args.repeats}")
    print("| policy | actions | s per action (wall) | s per action (CPU) | s per fooled obs (wall / CPU) | "
          "generator s per step (wall / CPU) | s per action via generator (wall / CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        policy = model.policy
        policy.set_training_mode(False)
        n = int(model.action_space.n)
        obs = collect_observations(model, args.game, 72, seed=0, every=2)
        action = get_visualizer("action")
        wall, cpu = timed(lambda p=policy, v=action: v.visualize(p), args.repeats, sync)
        fooling = get_visualizer("fooling")
        f_wall, f_cpu = timed(lambda p=policy, v=fooling, o=obs[:8]: v.visualize(p, None, o), args.repeats, sync)
        with tempfile.TemporaryDirectory() as folder:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            prior = train_generator(policy, obs, folder, GeneratorConfig(steps=args.generator_steps, batch_size=64,
                                                                         checkpoint_every=10**6))
            if sync:
                torch.cuda.synchronize()
            g_wall = (time.perf_counter() - start_wall) / args.generator_steps
            g_cpu = (time.process_time() - start_cpu) / args.generator_steps
        code = GeneratorVisualizer(prior)
        c_wall, c_cpu = timed(lambda p=policy, v=code: v.visualize(p), args.repeats, sync)
        print(f"| {name} | {n} | {wall / n:.3f} | {cpu / n:.3f} | {f_wall / 8:.2f} / {f_cpu / 8:.2f} | "
              f"{g_wall:.3f} / {g_cpu:.3f} | {c_wall / n:.3f} / {c_cpu / n:.3f} |", flush=True)


if __name__ == "__main__":
    main()
