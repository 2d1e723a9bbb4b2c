"""The program store: compiled programs on disk, loaded by another compile cache (another process) instead of
compiled again, training exactly as the compiled ones do."""

import dataclasses

import jax
import pytest

from scaling import program_store
from scaling.population import make_bucket
from scaling.programs import Programs
from scaling.train import train_bucket


@pytest.fixture
def store_dir(tmp_path):
    """jax's compile cache (and so the program store) on, in a directory of the test's own."""
    was = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    jax.config.update("jax_enable_compilation_cache", True)
    yield tmp_path / "programs"
    jax.config.update("jax_compilation_cache_dir", was[0])
    jax.config.update("jax_enable_compilation_cache", was[1])


def test_a_program_compiled_once_is_loaded_by_the_next_cache_and_trains_the_same(store_dir, member_factory):
    bucket = make_bucket([member_factory(n=3, depth=2, width=3, seed=s, steps=200) for s in range(4)], eval_every=50)
    with Programs() as first:
        compiled_rows = train_bucket(bucket, programs=first)
    assert first.compiles >= 2 and first.loads == 0  # the draw and chunk programs at least
    assert len(list(store_dir.iterdir())) == first.compiles
    with Programs() as second:
        loaded_rows = train_bucket(bucket, programs=second)
    assert second.compiles == 0 and second.loads == first.compiles
    strip = lambda rows: [dataclasses.replace(r, wall_s=0.0) for r in rows]
    assert strip(loaded_rows) == strip(compiled_rows)


def test_other_compiler_options_and_a_torn_file_compile_again(store_dir, member_factory):
    bucket = make_bucket([member_factory(n=2, depth=1, width=2, seed=s, steps=100) for s in range(2)], eval_every=50)
    with Programs() as first:
        train_bucket(bucket, programs=first)
    with Programs(xla_defaults=True) as other:  # another program: its options differ
        train_bucket(bucket, programs=other)
    assert other.loads == 0 and other.compiles == first.compiles
    for path in store_dir.iterdir():
        path.write_bytes(path.read_bytes()[:100])
    with Programs() as torn:
        train_bucket(bucket, programs=torn)
    assert torn.loads == 0 and torn.compiles == first.compiles


def test_the_store_is_off_with_jaxs_cache(member_factory, tmp_path):
    was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        assert program_store.directory() is None
    finally:
        jax.config.update("jax_enable_compilation_cache", was)
