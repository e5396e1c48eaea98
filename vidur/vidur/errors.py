"""Errors for deployments the simulator cannot model. All are ValueErrors with a message that
names what is wrong and what would fix it."""


class DeploymentError(ValueError):
    """A deployment that cannot exist as configured."""


class UnknownModelError(DeploymentError):
    """A model name that is neither in the catalogue nor a readable config.json."""


class ModelConfigError(DeploymentError):
    """A model shape the simulator cannot model: a malformed or inconsistent config, or an
    architecture it does not support (mixture of experts)."""


class UnknownGpuError(DeploymentError):
    """A GPU name that is not in the catalogue."""


class ParallelismError(DeploymentError):
    """A tensor- or pipeline-parallel degree that does not divide the model."""


class ContextTooLongError(DeploymentError):
    """A max_model_len beyond the model's context (max_position_embeddings), not explicitly allowed."""


class ModelDoesNotFitError(DeploymentError):
    """The weights, activations and a minimal KV cache do not fit in GPU memory."""


class MissingProfileError(DeploymentError):
    """No profile calibrates an operator on this GPU, nor on its reference GPU."""
