"""What `vidur catalogue` shows: each catalogue entry's aliases, and which (GPU, model) pairs
the profiling roots hold tables for. A catalogue model counts as profiled on a GPU when an
`mlp.csv` there has its layer shape (the predictor matches tables by shape, so Mistral-7B runs
on Llama-3-8B's; a model whose own folder is profiled uses its own)."""

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
    """Every catalogue model with tables of its shape on a GPU (the ones the predictor uses for
    it), and every profiled model folder that no catalogue model uses, by GPU then model."""
    pairs = []
    used = set()
    for gpu in sorted({gpu for gpu, _ in profiles.compute}):
        for name, model in models.items():
            profile = profiles.compute_profile(gpu, layer_shape(model), model.profile_path)
            if profile is None:
                continue
            used.add((gpu, profile.model))
            own = profile.model in (name, model.profile_path)
            pairs.append(ProfiledPair(gpu, name, profile.tensor_parallel_degrees, None if own else profile.model))
    for (gpu, folder), profile in profiles.compute.items():
        if (gpu, folder) not in used:
            pairs.append(ProfiledPair(gpu, folder, profile.tensor_parallel_degrees, None))
    return sorted(pairs, key=lambda pair: (pair.gpu, pair.model))
