"""Replay distillation: on the replayed rows of each batch, the fine-tuned model is also pulled
towards the start model's whole next-token distribution, not only towards the replayed text.

A personal round replays general bash in every batch (training/loop.py, replay_share) so the
model does not forget it. Cross-entropy on a replayed token only says which token came; the
start model's distribution says how likely every token was, so matching it (KL divergence,
teacher -> student) keeps the model's behaviour on general bash where it was much more closely
at the same cost in rows (docs/benchmarks.md, "Personal training", has the measurement).

It attaches to the model like the adapters do (forward hooks), so the training loop needs
nothing new: in training mode, a forward with targets returns

    loss = cross-entropy(all rows) + weight * KL(teacher || student)(the last `rows` rows)

where the last `rows` rows of a batch are the replayed ones (the loop appends them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.errors import TrainingError
from ..model.gpt import GPT


class ReplayDistillation:
    def __init__(self, model: GPT, teacher, rows: int, weight: float = 1.0) -> None:
        """teacher(idx) -> logits (B, T, V) of the start model, without gradients (a frozen copy,
        or the same model with its adapters switched off). rows: replayed rows per batch."""
        if rows < 1:
            raise TrainingError("replay distillation needs replayed rows (replay_share > 0)")
        if not weight > 0:
            raise TrainingError(f"the replay distillation weight must be positive, got {weight!r}")
        self.model, self.teacher, self.rows, self.weight = model, teacher, rows, weight
        self.hidden: torch.Tensor | None = None  # the final norm's output of the current forward
        self.last_kl: float | None = None
        self._handles = [
            model.norm.register_forward_hook(self._keep_hidden),
            model.register_forward_hook(self._add_kl, with_kwargs=True),
        ]

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _keep_hidden(self, module, inputs, output) -> None:
        self.hidden = output  # (B, T, C)

    def _add_kl(self, module, args, kwargs, output):
        targets = kwargs.get("targets")
        if targets is None or not module.training or not torch.is_grad_enabled():
            return None  # evaluation and decoding are left alone
        idx = args[0] if args else kwargs["idx"]
        replayed = idx[-self.rows :]  # (R, T)
        hidden = self.hidden[-self.rows :]  # taken first: a teacher that is this model runs the hook again
        with torch.no_grad():
            teacher_logp = F.log_softmax(self.teacher(replayed).float(), dim=-1)  # (R, T, V)
        student_logits = F.linear(hidden, self.model.wte.weight).float()  # (R, T, V)
        student_logp = F.log_softmax(student_logits, dim=-1)
        kl = F.kl_div(student_logp.flatten(0, 1), teacher_logp.flatten(0, 1), log_target=True, reduction="batchmean")
        self.hidden = None
        self.last_kl = kl.item()
        return output + self.weight * kl
