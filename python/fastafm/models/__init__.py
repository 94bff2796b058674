"""The estimators and what defines a model: the hyperparameter table, the registry of classes, warm starts,
model files. `fastafm.models.estimators` holds the four public classes (re-exported by the package root)."""
