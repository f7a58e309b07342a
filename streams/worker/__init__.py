"""The `rillet worker` process: the Faust app, the per-view agent, the batch transport and the metrics."""
