"""Training, shared by every estimator and by the Dask workers: the training state (parameters, optimizer
slots, generator, history), the row sources an epoch runs over, the epoch loop (engine) and its callbacks."""
