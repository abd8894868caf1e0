"""The searched rates over training: ``DIR/rates.json`` (every rate, every epoch) and
``DIR/rates.png`` (one line per branch)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..utils import atomic_path


class RateLog:
    """Records ``{"epoch", "iter", "rates": [[r1, r2], ...], "fov"}`` entries and rewrites
    ``rates.json`` and ``rates.png`` atomically after each. On resume, entries after the resumed
    iteration are dropped so the log reads as one run."""

    def __init__(self, folder, blocks: Sequence[str], resume_iter: int | None = None):
        self.folder = Path(folder)
        self.json_path, self.plot_path = self.folder / "rates.json", self.folder / "rates.png"
        self.blocks = list(blocks)
        self.entries: list[dict] = []
        if resume_iter is not None and self.json_path.is_file():
            saved = json.loads(self.json_path.read_text())
            self.entries = [e for e in saved.get("entries", []) if e["iter"] <= resume_iter]

    def record(self, epoch: int, iteration: int, rates: Sequence[Sequence[float]], fov: float) -> None:
        self.entries = [e for e in self.entries if e["iter"] < iteration]
        self.entries.append({"epoch": epoch, "iter": iteration, "fov": float(fov),
                             "rates": [[round(float(r), 6) for r in block] for block in rates]})
        self.write()

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.json_path) as tmp:
            lines = ",\n  ".join(json.dumps(e) for e in self.entries)  # one entry a line
            Path(tmp).write_text(f'{{"blocks": {json.dumps(self.blocks)},\n "entries": [\n  {lines}\n ]}}\n')
        if self.entries:
            try:
                plot_rates(self.blocks, self.entries, self.plot_path)
            except ImportError:  # matplotlib is the optional extra atrous[plots]; rates.json has it all
                pass


def plot_rates(blocks: Sequence[str], entries: Sequence[dict], path) -> None:
    """Every branch's rate against the iteration (one colour per block, one line style per
    branch), with the field of view on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters = [e["iter"] for e in entries]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = plt.get_cmap("tab10" if len(blocks) <= 10 else "viridis")
    styles = ["-", "--", ":", "-."]
    for b, name in enumerate(blocks):
        colour = colours(b % 10) if len(blocks) <= 10 else colours(b / max(1, len(blocks) - 1))
        for k in range(len(entries[0]["rates"][b])):
            ax.plot(iters, [e["rates"][b][k] for e in entries], color=colour, linestyle=styles[k % 4],
                    marker="." if len(iters) < 40 else None, label=f"{name} r{k + 1}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("dilation rate r")
    ax.set_title("Dilation-rate search (RegSeg Sec 3.4): every branch's rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fov_ax = ax.twinx()
    fov_ax.plot(iters, [e["fov"] for e in entries], color="tab:red", linewidth=2, alpha=0.6)
    fov_ax.set_ylabel("field of view (px)", color="tab:red")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
