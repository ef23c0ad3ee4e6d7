"""Training: the evaluator, the small captioner and suite-declared generator runs, resumable."""
