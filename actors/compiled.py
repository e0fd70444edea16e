"""A compiled function with a fixed input signature, called without tf.function's dispatch.

Why: every call of a ``tf.function`` binds its arguments to the function's type,
canonicalises them and looks the trace up in its cache before running the graph. With a
fixed ``input_signature`` there is exactly one trace, so that work finds the same answer
on every call, and it is not cheap: about 200-250 µs of Python per call, measured on a
member's 256-row training step of ~900 µs (`docs/benchmarks.md`, bench train). Calling
the one concrete function directly, with the NumPy inputs converted by ``tf.constant``
(a faster path than the concrete function's own conversion), skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["FixedSignatureFunction"]


class FixedSignatureFunction:
    """``tf.function(fn, input_signature=signature)``, called through its concrete function.

    Traced on the first call, as a ``tf.function`` is (a learner that never predicts never
    traces its predict graph). Inputs are positional, one per `signature` entry, NumPy
    arrays or tensors of the signature's dtype: the concrete function checks them.

    Example:
        >>> double = FixedSignatureFunction(
        ...     lambda x: 2 * x, [tf.TensorSpec([None], tf.float32)]
        ... )
        >>> double(np.ones(3, np.float32)).numpy().tolist()
        [2.0, 2.0, 2.0]
    """

    def __init__(self, fn: Callable[..., Any], signature: Sequence[tf.TensorSpec]):
        self._function = tf.function(fn, input_signature=list(signature))
        self._concrete: Any = None

    def trace(self) -> None:
        """Trace now (a first call costs ~0.3 s; callers that must not stall later do it
        up front)."""
        if self._concrete is None:
            self._concrete = self._function.get_concrete_function()

    def tracing_count(self) -> int:
        """How many times the function has been traced: 1 once called, whatever the inputs'
        batch sizes (a fixed signature must never retrace)."""
        return int(self._function.experimental_get_tracing_count())

    def __call__(self, *args: Any) -> Any:
        if self._concrete is None:
            self.trace()
        return self._concrete(*(tf.constant(a) if isinstance(a, np.ndarray) else a for a in args))
