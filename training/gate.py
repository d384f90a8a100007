"""The quality gate: publish a fine-tuned checkpoint only if it is better for this user and has
not forgotten bash.

Two figures, both bits per byte (lower is better), each measured for the model before and after
fine-tuning on the same text:
- the user's holdout (their own scripts that training never saw): must improve, by at least
  `min_gain` (relative);
- the general holdout that ships with the default model (`model/weights/holdout/`): may get worse
  by at most `max_general_loss` (relative, 2 % by default). Personal training that makes the model
  forget general bash is not published.
When the installed model has no general holdout, the forgetting check cannot be made; the gate
says so in its reason and decides on the user's holdout alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_MAX_GENERAL_LOSS = 0.02
DEFAULT_MIN_GAIN = 0.0


@dataclass
class GateDecision:
    publish: bool
    reason: str
    user_bpb_before: float | None
    user_bpb_after: float | None
    general_bpb_before: float | None = None
    general_bpb_after: float | None = None
    max_general_loss: float = DEFAULT_MAX_GENERAL_LOSS
    min_gain: float = DEFAULT_MIN_GAIN
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        def figure(before, after):
            if before is None or after is None:
                return "n/a"
            return f"{before:.4f} -> {after:.4f} bpb ({(after - before) / before:+.2%})"

        lines = [
            f"quality gate: {'PUBLISH' if self.publish else 'REJECT'}: {self.reason}",
            f"  your holdout:    {figure(self.user_bpb_before, self.user_bpb_after)}",
            f"  general holdout: {figure(self.general_bpb_before, self.general_bpb_after)}"
            f" (allowed loss {self.max_general_loss:.0%})",
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def headline(self, where: str, seconds: float, user_note: str = "") -> str:
        """The round in one line a user understands: published or not, why, both figures.
        `user_note` says how your holdout's figure is made (say, "each of 9 held-out scripts
        weighed equally")."""

        def figure(name, before, after, note=""):
            if before is None or after is None:
                return f"{name} not measured"
            return f"{name} {before:.3f} -> {after:.3f} bpb ({(after - before) / before:+.1%}{note})"

        yours = figure("your scripts", self.user_bpb_before, self.user_bpb_after, f", {user_note}" if user_note else "")
        general = figure(
            "general bash", self.general_bpb_before, self.general_bpb_after, f", allowed +{self.max_general_loss:.0%}"
        )
        if self.publish:
            return f"bashlsp-train: published the model of {where} ({seconds:.0f} s): {yours}, {general}"
        return f"bashlsp-train: nothing published, {self.reason}; {yours}, {general}; the current model stays"


def _finite(x: float | None) -> bool:
    return x is not None and x == x and x not in (float("inf"), float("-inf"))


def decide(
    user_before: float | None,
    user_after: float | None,
    general_before: float | None = None,
    general_after: float | None = None,
    max_general_loss: float = DEFAULT_MAX_GENERAL_LOSS,
    min_gain: float = DEFAULT_MIN_GAIN,
    missing_general_note: str | None = None,
) -> GateDecision:
    """Apply the gate to measured figures (None: not measured). `missing_general_note` says why
    there is no general figure, when there is none."""
    decision = GateDecision(
        publish=False,
        reason="",
        user_bpb_before=user_before,
        user_bpb_after=user_after,
        general_bpb_before=general_before,
        general_bpb_after=general_after,
        max_general_loss=max_general_loss,
        min_gain=min_gain,
    )
    if not (_finite(user_before) and _finite(user_after)):
        decision.reason = "no holdout of your scripts to measure on (need at least 2 scripts)"
        return decision
    if user_after >= user_before * (1 - min_gain):
        decision.reason = f"no improvement on your holdout ({user_before:.4f} -> {user_after:.4f} bpb)"
        return decision
    if general_before is None or general_after is None:
        decision.notes.append(
            missing_general_note or "no general holdout ships with this model; the forgetting check was skipped"
        )
    elif not _finite(general_after) or general_after > general_before * (1 + max_general_loss):
        decision.reason = (
            f"forgets general bash: general holdout {general_before:.4f} -> {general_after:.4f} bpb, "
            f"more than the allowed {max_general_loss:.0%} worse"
        )
        return decision
    decision.publish = True
    decision.reason = f"improves your holdout {user_before:.4f} -> {user_after:.4f} bpb"
    return decision
