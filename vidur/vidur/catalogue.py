"""What `vidur catalogue` shows: each catalogue entry's aliases, and which (GPU, model) pairs
the profiling roots hold tables for. A catalogue model counts as profiled on a GPU when an
`mlp.csv` there has its layer shape (the predictor matches tables by shape, so Mistral-7B runs
on Llama-3-8B's)."""

from dataclasses import dataclass

from vidur.models import ModelSpec
from vidur.operator_work import layer_shape
from vidur.profiles import ProfileSet


def aliases_by_name(aliases: dict[str, str]) -> dict[str, list[str]]:
    """Each catalogue name's aliases, sorted."""
    found: dict[str, list[str]] = {}
    for alias, name in sorted(aliases.items()):
        found.setdefault(name, []).append(alias)
    return found


@dataclass(frozen=True, slots=True)
class ProfiledPair:
    gpu: str
    model: str
    tensor_parallel_degrees: list[int]
    """The profiled model folder whose tables it uses, where it is not the model's own."""
    tables_of: str | None


def profiled_pairs(profiles: ProfileSet, models: dict[str, ModelSpec]) -> list[ProfiledPair]:
    """Every catalogue model with tables of its shape on a GPU, and every profiled model folder
    that is no catalogue model's shape, by GPU then model."""
    pairs = []
    for (gpu, shape), profile in profiles.compute.items():
        matching = [name for name, model in models.items() if layer_shape(model) == shape]
        degrees = profile.tensor_parallel_degrees
        for name in matching or [profile.model]:
            pairs.append(ProfiledPair(gpu, name, degrees, None if name == profile.model else profile.model))
    return sorted(pairs, key=lambda pair: (pair.gpu, pair.model))
