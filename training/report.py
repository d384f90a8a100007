"""`--report PNG`: the training loss curve and the before/after bits per byte, as one picture.

matplotlib is an optional extra (`pip install 'bashlsp[report]'`); without it the trainer says
so and carries on.
"""

from __future__ import annotations

from pathlib import Path

from .gate import GateDecision


def write_report(path: Path, history: list[dict], decision: GateDecision | None) -> str:
    """Write the PNG; returns a line saying what was done (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return f"no report written to {path}: matplotlib is not installed (pip install 'bashlsp[report]')"

    steps = [h["step"] for h in history if "loss" in h]
    losses = [h["loss"] for h in history if "loss" in h]
    fig, (loss_ax, bpb_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot(steps, losses, label="training loss", color="tab:blue")
    if len(losses) >= 10:
        width = max(2, len(losses) // 10)
        smooth = [
            sum(losses[max(0, i - width + 1) : i + 1]) / len(losses[max(0, i - width + 1) : i + 1])
            for i in range(len(losses))
        ]
        loss_ax.plot(steps, smooth, label=f"mean of {width}", color="tab:orange")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("cross-entropy (nats/token)")
    loss_ax.set_title("fine-tuning loss")
    loss_ax.legend()

    labels, before, after = [], [], []
    if decision is not None:
        for label, b, a in (
            ("your holdout", decision.user_bpb_before, decision.user_bpb_after),
            ("general holdout", decision.general_bpb_before, decision.general_bpb_after),
        ):
            if b is not None and a is not None:
                labels.append(label)
                before.append(b)
                after.append(a)
    xs = range(len(labels))
    bpb_ax.bar([x - 0.2 for x in xs], before, width=0.4, label="before")
    bpb_ax.bar([x + 0.2 for x in xs], after, width=0.4, label="after")
    bpb_ax.set_xticks(list(xs), labels)
    bpb_ax.set_ylabel("bits per byte (lower is better)")
    verdict = "" if decision is None else ("published" if decision.publish else "not published")
    bpb_ax.set_title(f"quality gate: {verdict}")
    if labels:
        bpb_ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"report written to {path}"
