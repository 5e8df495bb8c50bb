"""HTTP layer: the app and `bnscope serve` (main), thin routes that validate, call the runs service, and
shape the answer (routes/), and what every route shares: schemas, errors, security, limits, deps, http."""
