"""The grading engine: plans a submission's checks, runs its code in a sandboxed runner, re-runs every check in a
judge where no student code ran, and decides each verdict and its points (map: docs/grading-contract.md)."""
