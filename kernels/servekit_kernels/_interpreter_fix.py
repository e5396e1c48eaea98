"""Lets Triton's CPU interpreter run loops with bounds computed in the kernel under NumPy 2.4.

The interpreter turns a loop bound (a one-element array there) into an int with `int(array)`,
which NumPy 2.4 refuses (triton-lang/triton#9171, fixed upstream by #9172, after Triton 3.6).
Compiled kernels are not affected; this only changes how the interpreter reads such a bound.
"""

import numpy as np
import triton


def fix_interpreter_loop_bounds() -> None:
    if not triton.knobs.runtime.interpret or np.lib.NumpyVersion(np.__version__) < "2.4.0":
        return
    from triton.runtime import interpreter

    patch_tensor = interpreter._patch_lang_tensor
    if getattr(patch_tensor, "reads_bounds_with_item", False):
        return

    def patch_tensor_reading_bounds_with_item(tensor: object, scope: object) -> None:
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))  # type: ignore[attr-defined]

    patch_tensor_reading_bounds_with_item.reads_bounds_with_item = True  # type: ignore[attr-defined]
    interpreter._patch_lang_tensor = patch_tensor_reading_bounds_with_item

