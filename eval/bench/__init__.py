"""The benchmarks (`make bench-*`): each runs real parts and prints the numbers docs/benchmarks.md reports. Apart from
the evaluation library (eval/*.py), which they use; only they may also import training (finetune/)."""
