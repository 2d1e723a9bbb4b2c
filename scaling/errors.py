"""The error types that the CLI turns into a one-line message: exit code 2 (bad input), 1 (a cluster fault)."""


class UserError(Exception):
    """Bad input from the user: a file, a key and a problem, shown as one line without a traceback."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class ClusterError(UserError):
    """A process left the cluster, or the processes disagree: one line, exit code 1."""

    exit_code = 1
