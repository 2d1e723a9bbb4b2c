"""The allowed names of every choice in an experiment file, kept free of jax so that config validation,
`scaling --help` and `import analysis` stay light. The registries that implement them (model.ACTIVATIONS,
train.OPTIMIZERS) are checked against these lists when they are imported."""

TASKS = ("parity",)
ENCODINGS = ("pm1", "01")
ACTIVATIONS = ("relu", "tanh", "sigmoid")
INITS = ("he", "lecun", "rademacher")
OPTIMIZERS = ("adam", "sgd", "momentum")
LOSSES = ("bce", "mse")
