"""TensorFlow process set-up: quiet logs and thread pools sized to the CPUs Ray gave us.

Several members share a small machine; if each TensorFlow runtime sized its pools to
every core, four members on two cores would run 4x oversubscribed. This must run
before the first TensorFlow op in the process, so actors call it first thing.
"""

from __future__ import annotations

import logging
import math
import os

__all__ = ["configure_tensorflow"]

logger = logging.getLogger(__name__)


def configure_tensorflow(num_cpus: float | None) -> int:
    """Size TensorFlow's intra/inter-op pools to `num_cpus` (at least one thread).

    Args:
        num_cpus: CPUs reserved for this process (Ray's ``num_cpus``; fractions allowed).
            None leaves TensorFlow's defaults.

    Returns:
        The intra-op thread count set (0 when left at the default).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if num_cpus is None:
        return 0
    threads = max(1, math.floor(num_cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # The runtime already started in this process (e.g. a test that built a model
        # first); the pools cannot change any more, which is harmless but worth saying.
        logger.debug("TensorFlow runtime already initialised; thread pools left as they are")
        return 0
    return threads
