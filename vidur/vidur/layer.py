"""What one transformer layer runs besides attention, as the profiles name the operators."""

# (operator, times per layer): two residual adds, after attention and after the MLP.
LAYER_OPERATORS: tuple[tuple[str, int], ...] = (
    ("input_layernorm", 1),
    ("attn_pre_proj", 1),
    ("attn_rope", 1),
    ("attn_post_proj", 1),
    ("post_attention_layernorm", 1),
    ("mlp_up_proj", 1),
    ("mlp_act", 1),
    ("mlp_down_proj", 1),
    ("add", 2),
)

# Tensor parallelism all-reduces the attention output and the MLP output of every layer.
ALL_REDUCES_PER_LAYER = 2
