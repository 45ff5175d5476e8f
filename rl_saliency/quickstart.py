"""``rl-saliency quickstart``: the main job on built-in defaults, end to end on a CPU.

Trains a Sparse Free-Lunch-Saliency agent on Breakout for a short budget, evaluates it on whole games,
and renders a video of its attention over the game. Running it again continues where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_saliency.evaluate import evaluate, format_summary
from rl_saliency.train import CONFIG_FILE, MODEL_FILE, train


def quickstart(out: str | Path = "runs/quickstart", agent: str = "fls_sparse", game: str = "breakout",
               timesteps: int = 50_000, episodes: int = 3, video_steps: int = 400, method: str = "attention",
               n_envs: int = 8, seed: int = 0, progress: bool = True) -> dict:
    from rl_saliency.agents.spec import load_spec
    from rl_saliency.envs import resolve_game
    from rl_saliency.errors import SpecError, check_count
    from rl_saliency.render.video import render_agent
    from rl_saliency.saliency.base import get_method
    from rl_saliency.train import read_run_config

    # everything that can be wrong with the options fails now, not after minutes of training
    out = Path(out)
    spec, game = load_spec(agent), resolve_game(game).name
    timesteps = check_count(timesteps, "--timesteps")
    episodes = check_count(episodes, "--episodes")
    video_steps = check_count(video_steps, "--video-steps")
    n_envs = check_count(n_envs, "--n-envs")
    get_method(method)
    resume = (out / CONFIG_FILE).exists()
    if resume:  # continuing: the folder must hold this agent on this game
        config = read_run_config(out / CONFIG_FILE)
        held = (config["spec"].get("name"), config["game"])
        if held != (spec.name, game):
            raise SpecError(f"{out} holds a run of {held[0]} on {held[1]}, not {spec.name} on {game}; use another "
                            f"--out (or --agent {held[0]} --game {held[1]} to continue it)")
    print(f"[1/3] training {agent} on {game} for {timesteps} steps -> {out}")
    train(agent, game=game, timesteps=timesteps, out=out, seed=seed, n_envs=n_envs, resume=resume, device="cpu",
          progress=progress)
    print(f"[2/3] evaluating on {episodes} whole games")
    summary = evaluate(out / MODEL_FILE, episodes=episodes, seed=seed, out=out / "eval", device="cpu",
                       progress=progress, max_frames=20_000)
    print(format_summary(summary))
    print(f"[3/3] rendering {video_steps} steps of {method} saliency")
    video = render_agent(out / MODEL_FILE, method=method, steps=video_steps, out=out / f"{method}.mp4",
                         seed=seed, device="cpu", progress=progress)
    print(f"video: {', '.join(video['paths'])} ({video['frames']} frames, {video['fps']:.0f} frames/s)")
    return {"run": str(out), "evaluation": summary, "video": video}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="train, evaluate and render an FLS agent on built-in defaults (a few CPU minutes)",
        description=__doc__.splitlines()[2].strip() + " Running it again continues where it stopped.",
        epilog="example: rl-saliency quickstart --game pong --timesteps 100000 --out runs/pong_quickstart")
    parser.add_argument("--out", default="runs/quickstart")
    parser.add_argument("--agent", default="fls_sparse", help="agent spec (default: fls_sparse)")
    parser.add_argument("--game", default="breakout")
    parser.add_argument("--timesteps", type=float, default=50_000)
    parser.add_argument("--episodes", type=int, default=3, help="games to evaluate")
    parser.add_argument("--video-steps", type=int, default=400)
    parser.add_argument("--method", default="attention", help="saliency method for the video")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    quickstart(args.out, agent=args.agent, game=args.game, timesteps=args.timesteps, episodes=args.episodes,
               video_steps=args.video_steps, method=args.method, n_envs=args.n_envs, seed=args.seed)
    return 0
