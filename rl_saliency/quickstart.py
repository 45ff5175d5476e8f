"""``rl-saliency quickstart``: the main job on built-in defaults, end to end on a CPU in a couple of minutes.

Takes the zoo's trained Sparse FLS Ms. Pac-Man agent, evaluates it on whole games, scores its attention and a
post-hoc method against real human gaze (the Atari-HEAD excerpt shipped in ``data/``, with the baselines), and
renders its attention beside where the player looked. ``--train`` trains a new agent first instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_saliency.paths import DATA_DIR

DEFAULT_MODEL = "zoo:fls_sparse-ms_pacman"
EXCERPT = DATA_DIR / "atari_head_excerpt"


def quickstart(out: str | Path = "runs/quickstart", model: str = DEFAULT_MODEL,
               atari_head: str | Path | None = EXCERPT, methods: tuple[str, ...] = ("attention", "gradient"),
               episodes: int = 3, video_steps: int = 300, gif: bool = True, train_agent: bool = False,
               agent: str = "fls_sparse", game: str = "ms_pacman", timesteps: int = 50_000, n_envs: int = 8,
               seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Evaluate, gaze-evaluate and render one agent; with ``train_agent``, train ``agent`` on ``game`` first."""
    from rl_saliency.agents.spec import load_spec
    from rl_saliency.envs import resolve_game
    from rl_saliency.errors import OptionError, SpecError, check_count
    from rl_saliency.evaluate import evaluate, format_summary
    from rl_saliency.runs import check_method, open_agent
    from rl_saliency.runs import model_path as resolve_model_path
    from rl_saliency.saliency.registry import get_method
    from rl_saliency.train import CONFIG_FILE, MODEL_FILE, read_run_config, train

    # everything that can be wrong with the options fails now, not after minutes of work
    out = Path(out)
    episodes = check_count(episodes, "--episodes")
    video_steps = check_count(video_steps, "--video-steps")
    for method in methods:
        get_method(method)
    if atari_head is not None and not Path(atari_head).exists():
        raise OptionError(f"--atari-head {atari_head} does not exist")
    steps = 4 if train_agent else 3
    if train_agent:
        spec, game = load_spec(agent), resolve_game(game).name
        timesteps = check_count(timesteps, "--timesteps")
        n_envs = check_count(n_envs, "--n-envs")
        run = out / "agent"
        resume = (run / CONFIG_FILE).exists()
        if resume:  # continuing: the folder must hold this agent on this game
            config = read_run_config(run / CONFIG_FILE)
            held = (config["spec"].get("name"), config["game"])
            if held != (spec.name, game):
                raise SpecError(f"{run} holds a run of {held[0]} on {held[1]}, not {spec.name} on {game}; use "
                                f"another --out (or --agent {held[0]} --game {held[1]} to continue it)")
        print(f"[1/{steps}] training {agent} on {game} for {timesteps} steps -> {run}")
        train(agent, game=game, timesteps=timesteps, out=run, seed=seed, n_envs=n_envs, resume=resume,
              device="cpu", progress=progress)
        model_path = run / MODEL_FILE
    else:
        model_path = resolve_model_path(model)
    opened = open_agent(model_path, device="cpu")
    game, policy = opened.game, opened.policy

    usable = []
    for method in methods:  # a plain CNN has no attention: say so and go on with the others
        try:
            check_method(get_method(method), method, policy)
            usable.append(method)
        except OptionError as err:
            print(f"note: {err}")
    step = steps - 2
    print(f"[{step}/{steps}] evaluating {model} on {episodes} whole games of {game}")
    summary = evaluate(model_path, episodes=episodes, seed=seed, out=out / "eval", device="cpu",
                       progress=progress, max_frames=20_000)
    print(format_summary(summary))
    result: dict[str, Any] = {"model": str(model_path), "evaluation": summary}
    trial = _excerpt_trial(atari_head, game)
    if trial is None:
        print(f"[{step + 1}/{steps}] no Atari-HEAD trial of {game} under {atari_head}: rendering the agent instead")
        from rl_saliency.render.video import render_agent

        video = render_agent(model_path, method=usable[0], steps=video_steps, out=out / f"{usable[0]}.mp4",
                             gif=gif, seed=seed, device="cpu", progress=progress)
    else:
        from rl_saliency.gaze.evaluator import format_table, gaze_eval
        from rl_saliency.render.replay import render_trial

        print(f"[{step + 1}/{steps}] scoring {', '.join(usable)} against human gaze ({trial.name})")
        tables = gaze_eval(model_path, trial, out / "gaze", methods=usable, device="cpu", progress=progress)
        print(format_table(tables["per_game"], tables["per_trial"]))
        result["gaze"] = tables["per_game"]
        print(f"[{steps}/{steps}] rendering {usable[0]} beside the human gaze")
        video = render_trial(model_path, trial, method=usable[0], steps=video_steps,
                             out=out / f"{usable[0]}_vs_human.mp4", gif=gif, device="cpu", progress=progress)
    print(f"video: {', '.join(video['paths'])} ({video['frames']} frames, {video['fps']:.0f} frames/s)")
    result["video"] = video
    return result


def _excerpt_trial(atari_head: str | Path | None, game: str) -> Path | None:
    """The first trial of ``game`` under ``atari_head`` (its txt path), or None."""
    if atari_head is None:
        return None
    from rl_saliency.errors import DataError
    from rl_saliency.gaze.data import find_trials

    try:
        found, _ = find_trials(atari_head, games=[game])
    except (FileNotFoundError, DataError):  # no trial of this game there
        return None
    return found[0].txt if found else None
