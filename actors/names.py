"""Names a running job registers in Ray, in a module light enough for the `scale` command
to import without loading TensorFlow."""

NAMESPACE = "online-ensemble"
COORDINATOR_NAME = "online-ensemble-coordinator"
