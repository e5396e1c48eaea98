"""The deployments a search tries: every combination of the listed choices, on top of the
base deployment config. The base config's `gpu_price_per_hour` is the price of its own GPU: a
point on another GPU type gets that type's catalogue price."""

import itertools
from dataclasses import replace

from vidur.config import SearchConfig
from vidur.deployment import ClusterConfig, DeploymentConfig
from vidur.gpus import canonical_gpu_name


def deployments_in(space: SearchConfig, base: DeploymentConfig) -> list[DeploymentConfig]:
    combos = itertools.product(
        space.gpus,
        space.tensor_parallel,
        space.pipeline_parallel,
        space.num_replicas,
        space.policies,
        space.token_budgets,
        space.max_num_seqs,
    )
    configs = []
    for gpu, tp, pp, replicas, policy, token_budget, max_num_seqs in combos:
        replica = replace(base.replica, gpu=gpu, tensor_parallel=tp, pipeline_parallel=pp)
        if canonical_gpu_name(gpu) != canonical_gpu_name(base.replica.gpu):
            replica = replace(replica, gpu_price_per_hour=None)
        # Policies that never chunk run whole prompts: their budget is the scheduler's default.
        budget = token_budget if policy == "sarathi" else None
        scheduler = replace(base.scheduler, policy=policy, token_budget=budget, max_num_seqs=max_num_seqs)
        cluster: ClusterConfig = replace(base.cluster, num_replicas=replicas)
        config = DeploymentConfig(replica, scheduler, cluster, base.cpu_overheads)
        # Policies that never chunk ignore the token budgets listed: keep one of them.
        if policy != "sarathi" and token_budget != space.token_budgets[0]:
            continue
        configs.append(config)
    return configs
