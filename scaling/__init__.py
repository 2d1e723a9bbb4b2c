"""scaling: how many hidden units does gradient training need for n-bit parity, at each depth?

The public engine API (see README "Python API"):
    Member, make_bucket, train_bucket, MemberResult, parity_table
"""

from scaling.population import Bucket, BucketSpec, Member, make_bucket
from scaling.tasks import parity_table
from scaling.train import MemberResult, train_bucket

__all__ = ["Bucket", "BucketSpec", "Member", "MemberResult", "make_bucket", "parity_table", "train_bucket"]
