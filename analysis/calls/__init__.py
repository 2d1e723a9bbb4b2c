"""Laws and calls: curve fits and their comparison, the growth laws and the call per depth group, the lecture's
claims with their controls, and the verdict."""
