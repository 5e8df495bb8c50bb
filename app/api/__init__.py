"""HTTP layer: thin routes that validate, call the runs service, and shape the answer."""
