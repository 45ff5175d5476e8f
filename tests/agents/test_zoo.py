"""The zoo of trained agents: they load, play better than chance, look where people look more than by chance,
and every command takes them as ``--model zoo:<name>``."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from rl_saliency.agents import zoo
from rl_saliency.cli import main
from rl_saliency.envs import make_atari_vec_env
from rl_saliency.evaluate import evaluate
from rl_saliency.quickstart import EXCERPT

PAIR = ("fls_sparse-ms_pacman", "nature-ms_pacman")  # the pair of the real Atari-HEAD trial's game
SHIPPED = tuple(agent.name for agent in zoo.load_index())
EXCERPT_TRIAL = EXCERPT / "ms_pacman" / "593_RZ_5037271_Aug-05-15-35-12.txt"


def test_the_zoo_ships_the_trained_pair_with_their_records():
    agents = {a.name: a for a in zoo.load_index()}
    assert set(PAIR) <= set(agents)
    assert agents[PAIR[0]].agent_steps == agents[PAIR[1]].agent_steps  # same recipe, same budget
    for name in SHIPPED:
        agent = agents[name]
        assert agent.agent_steps >= 1_000_000
        assert agent.path.is_file() and (agent.path.parent / "config.yaml").is_file()
        assert agent.score["episodes"] == 30 and agent.score["min"] <= agent.score["mean"] <= agent.score["max"]
        assert "rl-saliency train" in agent.command and f"--seed {agent.seed}" in agent.command
        # compact: weights only (the optimizer keeps its settings, not its moment estimates)
        assert agent.path.stat().st_size < 12e6
        with zipfile.ZipFile(agent.path) as archive:
            optimizer = torch.load(archive.open("policy.optimizer.pth"), weights_only=False)
        assert optimizer["state"] == {}
    # the Ms. Pac-Man pair carries its whole-trial gaze result, both protocols, with its twin and the centre bias
    for name in PAIR:
        gaze = agents[name].gaze
        method = gaze["method"]
        for protocol in ("default", "paper"):
            table = gaze[protocol]
            assert {method, f"untrained_{method}", "centre_bias"} <= set(table)
            assert table[method]["observations"] > 4000
            for baseline in ("centre_bias", f"untrained_{method}"):
                difference = table[f"nss_minus_{baseline}"]
                low, high = difference["ci95"]
                assert low <= difference["mean"] <= high
                assert abs(difference["mean"] - (table[method]["nss"] - table[baseline]["nss"])) < 0.002


def _random_scores(game: str, episodes: int, seed: int) -> np.ndarray:
    venv = make_atari_vec_env(game, episodes, seed=seed, training=False)
    rng = np.random.default_rng(seed)
    scores: dict[int, float] = {}
    venv.reset()
    while len(scores) < episodes:
        _, _, _, infos = venv.step(rng.integers(venv.action_space.n, size=episodes))
        for i, info in enumerate(infos):
            if "episode" in info and i not in scores:
                scores[i] = info["episode"]["r"]
    venv.close()
    return np.array(list(scores.values()))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_zoo_agent_loads_with_plain_ppo_and_beats_a_random_policy(name):
    agent = zoo.get_agent(name)
    model = PPO.load(agent.path, device="cpu")  # plain SB3, no rl_saliency loader
    assert model.num_timesteps == agent.agent_steps
    trained = evaluate(f"zoo:{name}", episodes=6, seed=1, device="cpu", progress=False)
    random_scores = _random_scores(agent.game, episodes=6, seed=1)
    # measured side by side: the trained agent is well above the random policy (about 2.5x over 30 games)
    assert trained["score_mean"] > 1.5 * random_scores.mean(), (trained["score_mean"], random_scores)


@pytest.mark.slow
@pytest.mark.parametrize("name,method", [("fls_sparse-ms_pacman", "attention"), ("nature-ms_pacman", "gradient")])
def test_zoo_agent_saliency_scores_above_chance_on_the_excerpt(tmp_path, name, method):
    from rl_saliency.gaze.evaluator import gaze_eval

    tables = gaze_eval(f"zoo:{name}", EXCERPT_TRIAL, tmp_path, methods=[method], stride=4, device="cpu",
                       progress=False, keep_observations=True)
    nss = tables["per_observation"].query("method == @method")["nss"].dropna().to_numpy()
    low = nss.mean() - 1.96 * nss.std(ddof=1) / np.sqrt(len(nss))
    assert len(nss) > 200 and low > 0, (nss.mean(), low)


def test_zoo_names_work_in_every_command(tmp_path, capsys):
    model = "zoo:fls_sparse-ms_pacman"
    assert main(["evaluate", "--model", model, "--episodes", "1", "--max-frames", "400",
                 "--out", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "evaluation.json").exists()
    assert main(["render", "--model", model, "--method", "attention", "--steps", "5",
                 "--out", str(tmp_path / "v.mp4")]) == 0
    assert main(["gaze-eval", "--model", model, "--method", "attention", "--atari-head", str(EXCERPT_TRIAL),
                 "--max-frames", "40", "--out", str(tmp_path / "gaze")]) == 0
    assert (tmp_path / "gaze" / "per_game.csv").stat().st_size > 0
    assert main(["sanity", "--model", model, "--methods", "gradient", "--n-obs", "2",
                 "--out", str(tmp_path / "sanity")]) == 0
    assert (tmp_path / "sanity" / "sanity.csv").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_an_unknown_zoo_name_lists_the_known_ones(capsys):
    assert main(["evaluate", "--model", "zoo:fls_sparse-mspacman", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown zoo agent 'fls_sparse-mspacman' (did you mean fls_sparse-ms_pacman?)" in err
    assert all(name in err for name in SHIPPED) and "Traceback" not in err
    # trust takes several models: each of them may be a zoo name
    assert main(["trust", "--model", "zoo:nature-ms_pacman", "zoo:fls_sparse-mspacman", "--out", "unused"]) == 2
    assert "unknown zoo agent 'fls_sparse-mspacman'" in capsys.readouterr().err


def _fake_zoo(tmp_path, model_bytes: bytes | None):
    folder = tmp_path / "zoo" / "x"
    folder.mkdir(parents=True)
    if model_bytes is not None:
        (folder / "model.zip").write_bytes(model_bytes)
    (tmp_path / "zoo" / "index.yaml").write_text("agents:\n- {name: x, path: x/model.zip, game: ms_pacman, "
                                                 "spec: nature}\n")
    return tmp_path / "zoo"


def test_a_zoo_index_naming_a_missing_file_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "ZOO_DIR", _fake_zoo(tmp_path, None))
    assert main(["evaluate", "--model", "zoo:x"]) == 2
    err = capsys.readouterr().err
    assert "names" in err and "x/model.zip" in err and "missing" in err and len(err.strip().splitlines()) == 1


def test_a_corrupt_zoo_zip_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "ZOO_DIR", _fake_zoo(tmp_path, b"PK\x03\x04 truncated"))
    for command in (["evaluate", "--model", "zoo:x"],
                    ["render", "--model", "zoo:x", "--out", str(tmp_path / "v.mp4")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "x/model.zip" in err and "corrupt" in err and len(err.strip().splitlines()) == 1


def test_a_malformed_zoo_index_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "index.yaml").write_text("agents: {not: a list}\n")
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    assert main(["zoo"]) == 2
    assert "has no 'agents:' list" in capsys.readouterr().err


def test_zoo_lists_the_index(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert all(f"zoo:{name}" in out for name in SHIPPED)
    fls = next(line for line in out.splitlines() if line.startswith("zoo:fls_sparse-ms_pacman"))
    assert "attention 0." in fls  # its whole-trial NSS next to the centre bias
