"""Every choice an experiment file makes by name, as one enum each (a StrEnum equals its string, so stored
rows, config hashes and messages read as before). Kept free of jax so that config validation,
`scaling --help` and `import analysis` stay light; the implementations are keyed by these enums
(model.ACTIVATIONS, model.INITS, steps.OPTIMIZERS, steps.LOSSES, tasks.TABLES)."""

import enum


class Task(enum.StrEnum):
    PARITY = "parity"  # the XOR of all n bits
    SPARSE_PARITY = "sparse_parity"  # the XOR of k hidden bits of n (Barak et al. 2022), learned from samples


class Data(enum.StrEnum):
    """Where a member's training rows come from."""

    TABLE = "table"  # the whole truth table (or uniform mini-batches of it), n <= 20
    ONLINE = "online"  # a fresh batch of uniform random inputs every step, drawn from the member's key
    FIXED = "fixed"  # mini-batches of one training set of m samples, drawn from the member's key


class Encoding(enum.StrEnum):
    PM1 = "pm1"  # bits as -1/+1
    ZERO_ONE = "01"


class Activation(enum.StrEnum):
    RELU = "relu"
    TANH = "tanh"
    SIGMOID = "sigmoid"


class Init(enum.StrEnum):
    HE = "he"
    LECUN = "lecun"
    RADEMACHER = "rademacher"
    LECUN_BIAS = "lecun_bias"  # LeCun's variance with small positive biases: fewer dead ReLUs in narrow layers
    ORTHOGONAL = "orthogonal"  # each kernel's polar factor (orthonormal rows or columns) at He's mean square


class Optimizer(enum.StrEnum):
    ADAM = "adam"
    SGD = "sgd"
    MOMENTUM = "momentum"


class Loss(enum.StrEnum):
    BCE = "bce"
    MSE = "mse"
    HINGE = "hinge"


class Profile(enum.StrEnum):
    """How the widths of a network's hidden layers follow its first layer's width."""

    CONSTANT = "constant"  # every layer as wide as the first
    HALVING = "halving"  # each layer half the one before (rounded up), at least 2: the XOR tree's shape


class WidthSearch(enum.StrEnum):
    """How the widths of a cell are chosen."""

    ADAPTIVE = "adaptive"  # the coarse grid from below, then bisection to w* (scaling.planning.search)
    GRID = "grid"  # exactly the listed widths
    PER_N = "per_n"  # one width per n, times_n * n
