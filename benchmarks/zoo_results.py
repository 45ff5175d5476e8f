"""The zoo agents' results for docs/results.md: 30-game scores, gaze alignment on the whole real trial under both
protocols (trained agents, their untrained twins, the baselines), paired differences with block confidence
intervals, NSS over the trial, still frames, and the zoo index entries. Run by hand after training:

    python benchmarks/zoo_results.py --agent fls_sparse=runs/fls_sparse_ms_pacman_s0/model.zip \
        --agent nature=runs/nature_ms_pacman_s0/model.zip --untrained-dir runs/untrained \
        --atari-head ../shared/atari_head/ms_pacman --out runs/results

``--report-only`` redraws the plot and prints the markdown tables from what ``--out`` holds.

Every step writes into ``--out`` and resumes (gaze-eval resumes by itself; evaluations are kept).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CHEAP = ("attention", "gradient", "gradcam")
COSTLY = ("integrated_gradients", "perturbation")
BASELINES = ("centre_bias", "intensity", "uniform")
METRICS = ("nss", "auc_judd", "shuffled_auc", "kl_div", "cc", "sim")


def protocol_kwargs(protocol: str, stride: int) -> dict[str, Any]:
    """gaze_eval options of a protocol: ``paper`` sets its own (210x160, stride 4); ``default`` is 84x84."""
    return {"protocol": "paper"} if protocol == "paper" else {"protocol": "default", "stride": stride}


def run_gaze(model: Path | None, methods: list[str], trial: Path, out: Path, protocol: str,
             stride: int) -> pd.DataFrame:
    from rl_saliency.gaze.evaluator import gaze_eval

    kwargs = protocol_kwargs(protocol, stride)
    if protocol == "paper" and stride != 4:  # a subsample of the paper's decision points, for costly methods
        kwargs["stride"] = stride
    tables = gaze_eval(model, trial, out, methods=methods, device="cpu", keep_observations=True, **kwargs)
    return tables["per_observation"]


def block_ci(diff: np.ndarray, block: int) -> tuple[float, float, float, int]:
    """Mean of ``diff`` and a 95 % t-interval over consecutive blocks (neighbouring observations are correlated,
    so single observations would give far too narrow an interval)."""
    n_blocks = len(diff) // block
    means = diff[: n_blocks * block].reshape(n_blocks, block).mean(axis=1)
    half = stats.t.ppf(0.975, n_blocks - 1) * means.std(ddof=1) / np.sqrt(n_blocks)
    return float(diff.mean()), float(means.mean() - half), float(means.mean() + half), n_blocks


def paired(per_obs: pd.DataFrame, a: str, b: str, metric: str = "nss", block: int = 50) -> dict[str, float]:
    table = per_obs.pivot_table(index="frame_index", columns="method", values=metric)
    both = table[[a, b]].dropna()
    mean, low, high, n_blocks = block_ci((both[a] - both[b]).to_numpy(), block)
    return {"a": a, "b": b, "metric": metric, "mean_diff": mean, "ci_low": low, "ci_high": high,
            "observations": len(both), "blocks": n_blocks}


def summary_table(per_obs: pd.DataFrame) -> pd.DataFrame:
    grouped = per_obs.groupby("method")
    out = grouped[list(METRICS)].mean()
    out["observations"] = grouped.size()
    return out


def plot_nss_over_trial(per_obs: dict[str, pd.DataFrame], out: Path, window: int = 101) -> None:
    """NSS per observation, smoothed (centred rolling mean): each agent's own map (attention where it has one,
    else the gradient), its untrained twin's where it has attention, and the centre-bias and intensity baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=110)
    baselines = {"centre_bias": dict(color="0.3", ls="--", lw=1.5), "intensity": dict(color="0.6", ls=":", lw=1.2)}
    drawn = set()
    for agent, table in per_obs.items():
        wide = table.pivot_table(index="frame_index", columns="method", values="nss").sort_index()
        smooth = wide.rolling(window, center=True, min_periods=window // 2).mean()
        own = "attention" if "attention" in wide.columns else "gradient"
        lines = [(own, dict(lw=1.4)), (f"untrained_{own}", dict(lw=1.1, ls="-."))] if own == "attention" else \
            [(own, dict(lw=1.4))]
        for method, style in lines:
            ax.plot(smooth.index, smooth[method], label=f"{agent}: {method}", **style)
        for method, style in baselines.items():
            if method not in drawn:
                ax.plot(smooth.index, smooth[method], label=method, **style)
                drawn.add(method)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("raw frame of the trial")
    ax.set_ylabel(f"NSS (rolling mean of {window} observations)")
    ax.set_title("Ms. Pac-Man, Atari-HEAD trial 593: the agents' saliency against human gaze over the trial")
    ax.legend(fontsize=8, ncol=3, loc="upper right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def still_frames(model: Path, trial: Path, method: str, starts: list[int], out: Path) -> Path:
    """A strip of frames (agent saliency | human gaze) from render_trial, one row per start frame."""
    import tempfile

    import cv2

    from rl_saliency.render.replay import render_trial

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for start in starts:
            video = Path(tmp) / f"{start}.mp4"
            render_trial(model, trial, method=method, steps=1, start=start, out=video, scale=2, device="cpu",
                         progress=False)
            ok, frame = cv2.VideoCapture(str(video)).read()
            if ok:
                rows.append(frame)
    cv2.imwrite(str(out), np.concatenate(rows, axis=1) if rows else np.zeros((8, 8, 3), np.uint8))
    return out


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/results.md from ``results.json``: one per agent and protocol, then the paired NSS
    differences with their block confidence intervals."""
    lines = []
    for name, record in results["agents"].items():
        for protocol in ("default", "paper"):
            if protocol not in record:
                continue
            lines += [f"**{name}, {protocol} protocol**", "",
                      "| method | NSS | AUC-Judd | shuffled AUC | KL ↓ | CC | SIM | observations |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for row in record[protocol]["table"]:
                values = " | ".join(f"{row[m]:.3f}" for m in METRICS)
                lines.append(f"| {row['method']} | {values} | {int(row['observations'])} |")
            lines += ["", "| NSS difference | mean | 95 % CI (blocks of 50) | observations |", "|---|---:|---|---:|"]
            for c in record[protocol]["paired_nss"]:
                lines.append(f"| {c['a']} - {c['b']} | {c['mean_diff']:+.3f} | [{c['ci_low']:+.3f}, "
                             f"{c['ci_high']:+.3f}] | {c['observations']} |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", action="append", required=True, help="name=model.zip")
    parser.add_argument("--untrained-dir", type=Path, required=True)
    parser.add_argument("--atari-head", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--stride", type=int, default=4, help="default protocol: an observation every N frames")
    parser.add_argument("--costly-stride", type=int, default=32, help="stride for integrated gradients, perturbation")
    parser.add_argument("--protocols", nargs="+", default=["default", "paper"])
    parser.add_argument("--skip-costly", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="only redraw the plot and print the tables from what <out> holds")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        report(results, args.out)
        return
    from rl_saliency.evaluate import evaluate
    from rl_saliency.gaze.data import find_trials

    trial = find_trials(args.atari_head, games=["ms_pacman"])[0][0].txt
    results: dict[str, Any] = {"trial": trial.stem, "agents": {}}
    for entry in args.agent:
        from rl_saliency.agents.zoo import resolve_model

        name, model = entry.split("=", 1)
        model = Path(resolve_model(model))
        untrained = args.untrained_dir / name / "model.zip"
        record: dict[str, Any] = {"model": str(model)}
        eval_json = args.out / name / "eval" / "evaluation.json"
        if not eval_json.exists():
            evaluate(model, episodes=args.episodes, seed=0, out=eval_json.parent, device="cpu")
        record["score"] = json.loads(eval_json.read_text())
        methods = [m for m in CHEAP if m != "attention" or name != "nature"]
        for protocol in args.protocols:
            per_obs = run_gaze(model, methods, trial, args.out / name / f"gaze_{protocol}", protocol, args.stride)
            twin = run_gaze(untrained, methods, trial, args.out / name / f"untrained_gaze_{protocol}", protocol,
                            args.stride)
            twin = twin[twin["method"].isin(methods)].assign(method=lambda d: "untrained_" + d["method"])
            both = pd.concat([per_obs, twin])
            rows = summary_table(both)
            if not args.skip_costly:
                costly = run_gaze(model, list(COSTLY), trial, args.out / name / f"gaze_{protocol}_costly", protocol,
                                  args.costly_stride)
                costly_rows = summary_table(costly[costly["method"].isin(COSTLY)])
                costly_rows.index = [f"{m} (stride {args.costly_stride})" for m in costly_rows.index]
                rows = pd.concat([rows, costly_rows])
            comparisons = []
            for method in methods:
                comparisons.append(paired(both, method, "centre_bias"))
                comparisons.append(paired(both, method, f"untrained_{method}"))
            record[protocol] = {"table": rows.reset_index(names="method").to_dict("records"),
                                "paired_nss": comparisons}
            both.to_parquet(args.out / name / f"per_observation_{protocol}.parquet")
        results["agents"][name] = record
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float))
        method = "attention" if name != "nature" else "gradient"
        still_frames(model, trial, method, [1200, 6000, 12000], args.out / f"frames_{name}_{method}.png")
    report(results, args.out)


def report(results: dict[str, Any], out: Path) -> None:
    plot_nss_over_trial({name: pd.read_parquet(out / name / "per_observation_default.parquet")
                         for name in results["agents"]}, out / "nss_over_trial.png")
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
