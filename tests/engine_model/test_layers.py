"""The parallel layers' own behaviour, beyond what the end-to-end comparisons with Hugging Face show."""

from typing import Any

import pytest
import torch

from engine.worker.model.layers.vocab import ParallelLMHead, VocabParallelEmbedding
from engine.worker.model.parallel import TensorParallel


def test_tied_lm_head_allocates_no_weight_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tied head shares the embedding's weight; it must not allocate (and drop) a vocabulary-sized one."""
    tp = TensorParallel()
    embedding = VocabParallelEmbedding(1000, 64, tp=tp)
    allocated: list[tuple[Any, ...]] = []
    real_empty = torch.empty

    def counting_empty(*args: Any, **kwargs: Any) -> torch.Tensor:
        allocated.append(args)
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", counting_empty)
    tied = ParallelLMHead(1000, 64, tp=tp, tied_to=embedding)
    assert tied.weight is embedding.weight
    assert allocated == []
    untied = ParallelLMHead(1000, 64, tp=tp, tied_to=None)
    assert allocated == [(1000, 64)] and untied.weight is not embedding.weight
