"""Compiled programs on disk, shared by every process that uses one compile-cache directory.

jax's persistent compile cache is written by process 0 of a cluster only, and it is consulted after a program
has been traced and lowered (a third of a chunk program's cost on a CPU). This store keeps the engine's own
executables (jax.experimental.serialize_executable) under `<jax's cache directory>/programs`, keyed by what
the program is (kind, bucket spec, population size, XLA options) and by everything that could make the bytes
wrong elsewhere: the source of the scaling package, the versions of jax, jaxlib, flax, optax and numpy, the jax
flags that change a traced program, XLA_FLAGS, the backend, the device kind and, on a CPU, the host's
instruction set. An executable names the device it was compiled for; a stored one is loaded onto this
process's first device instead (as jax's own cache does on GPUs), so that the processes of a cluster that share
one directory run what any of them compiled. Every process reads before it compiles and writes what it
compiled (atomically: a temporary file renamed into place), so a warm rerun neither compiles nor lowers, on
every process of a cluster (jax's own cache skips them all but process 0). A process about to compile a program
claims it first (a claim file, created exclusively); one that finds another's claim waits for that program
instead of compiling it too, so processes that need one program at once compile it once (load_or_compile says
when not). Programs sharded over a mesh are not stored. It is on whenever jax's cache is (the command line turns
it on; probes and benchmarks that measure compiles turn it off). Files are unpickled: the directory must be the
user's own, like jax's cache.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import pickle
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
from jax.experimental import serialize_executable

from scaling import about
from scaling.engine import claims

log = logging.getLogger(__name__)


def directory() -> Path | None:
    """Where programs are stored now (None: jax's compile cache is off or has no directory)."""
    root = jax.config.jax_compilation_cache_dir
    return Path(root) / "programs" if jax.config.jax_enable_compilation_cache and root else None


@functools.cache
def _fingerprint() -> str:
    """What must match for an executable to be loaded: the code that builds programs, the compiler, the device."""
    digest = hashlib.sha256(about.source_hash().encode())
    device = jax.devices()[0]
    import importlib.metadata

    versions = [importlib.metadata.version(name) for name in ("jaxlib", "flax", "optax", "numpy")]
    flags = [getattr(jax.config, name) for name in ("jax_enable_x64", "jax_threefry_partitionable",
                                                     "jax_default_matmul_precision", "jax_default_prng_impl")]
    environment = [os.environ.get(name, "") for name in ("XLA_FLAGS", "LIBTPU_INIT_ARGS")]
    digest.update(repr((jax.__version__, versions, flags, environment, device.platform, device.device_kind,
                        device.client.platform_version, platform.machine(),
                        _cpu_flags())).encode())
    return digest.hexdigest()


def _cpu_flags() -> str:
    """The host CPU's instruction-set flags (XLA's CPU code is compiled for them), where the OS says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# jax's persistent cache hands back executables that it deserialised itself; serialised again, they lose part
# of their code (one failed at its first call: "Function wrapped_iota not found"). So a program is stored only
# on positive evidence that XLA compiled it: jax asked its cache and missed. Without that (a hit, jax's cache
# off in this process, or jax handing back an executable it compiled or read earlier in this process, which
# it memoises without asking its cache) it is not stored. The flags are per compiling thread.
_seen = threading.local()


def _note_cache_event(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/compile_requests_use_cache":
        _seen.asked = True
    elif event == "/jax/compilation_cache/cache_hits":
        _seen.hit = True


jax.monitoring.register_event_listener(_note_cache_event)


def compile_fresh(lowered: jax.stages.Lowered, options: dict | None) -> tuple[jax.stages.Compiled, bool]:
    """(the compiled program, whether it may be stored: jax asked its persistent cache, missed, and compiled)."""
    _seen.asked, _seen.hit = False, False
    compiled = lowered.compile(options)
    return compiled, _seen.asked and not _seen.hit


def key(program: tuple, options: dict | None) -> str:
    """The file name of a program: (kind, spec, sizes...) as the compile cache keys it, without the mesh."""
    return hashlib.sha256(repr((program, sorted((options or {}).items()), _fingerprint())).encode()).hexdigest()


def load(name: str) -> jax.stages.Compiled | None:
    """The stored program, or None (not stored, the store is off, or the file cannot be read back)."""
    folder = directory()
    if folder is None or not (folder / name).is_file():
        return None
    try:
        payload, in_tree, out_tree = pickle.loads((folder / name).read_bytes())
        return load_onto(payload, in_tree, out_tree, jax.local_devices()[0])
    except Exception as e:  # a torn or foreign file is a miss: compile instead
        log.debug("compiled program %s not loaded: %s", name, e)
        return None


def load_or_compile(name: str, compile: Callable[[], tuple[jax.stages.Compiled, bool]]
                    ) -> tuple[jax.stages.Compiled, bool]:
    """(the program, whether it was compiled here): the stored one, else compile() -> (program, storable), stored
    where storable. A process claims a program before compiling it, and one that finds another's claim waits for
    that program and loads it instead; where the claim ends without a stored program (the compile failed) or goes
    stale, it compiles the program itself. A program that cannot be stored (jax's own cache served it) leaves a
    mark, and from then on each process compiles it at once, unclaimed. So a program is compiled once, except
    where a claim went stale or the program cannot be stored; rows never depend on who compiled it."""
    if (program := load(name)) is not None:  # a warm run writes nothing
        return program, False
    folder = directory()
    unstorable = None if folder is None else folder / f".{name}.unstorable"
    path = None if unstorable is None or unstorable.exists() else folder / f".{name}.claim"
    held = claims.claim(path)
    if held is False:
        claims.wait(path, path.parent / name)
        if (program := load(name)) is not None:
            return program, False
        # False again where another claimed it meanwhile, or the program cannot be stored: compile unclaimed.
        held = None if unstorable.exists() else claims.claim(path)
    try:
        if held and (program := load(name)) is not None:  # stored between the first load and the claim
            return program, False
        program, storable = compile()
        if storable:
            save(name, program)
        elif unstorable is not None:
            try:
                unstorable.touch()
            except OSError:
                pass
        return program, True
    finally:
        if held:
            claims.release(held, path)


def identity() -> str | None:
    """Which program store this process reads, for a cluster to learn which of its processes share one: a
    random name kept in the directory (made by whichever process comes first) and the fingerprint of what may
    be loaded; None when the store is off or cannot be written."""
    folder = directory()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        name = folder / ".identity"
        try:
            with open(name, "x") as f:  # exclusive: of processes starting together, one names the store
                f.write(os.urandom(8).hex())
        except FileExistsError:
            pass
        for _ in range(100):  # the first process's name may be created but not yet written
            if text := name.read_text().strip():
                return f"{text}/{_fingerprint()[:16]}"
            time.sleep(0.01)
    except OSError as e:
        log.debug("program store %s has no identity: %s", folder, e)
    return None


def load_onto(payload: bytes, in_tree, out_tree, device: jax.Device) -> jax.stages.Compiled:
    """A serialised one-device executable (serialize_executable.serialize), loaded to run on `device` whichever
    device it was compiled for: jax's deserialize_and_load keeps the compiled device assignment, which a process
    that does not hold that device cannot run. Private jax calls, as in jax 0.10 and 0.11; if they move, every
    load fails and programs are compiled instead (tests/test_program_store.py fails first)."""
    from jax._src import compiler
    from jax._src.lib import xla_client

    options = compiler.get_compile_options(num_replicas=1, num_partitions=1, device_assignment=[device],
                                           backend=device.client)
    devices = xla_client.DeviceList((device,))

    class Unpickler(pickle.Unpickler):  # serialize_executable's own, but every device reference is `device`
        def persistent_load(self, pid):
            if pid[0] == "exec":
                return device.client.deserialize_executable(pid[1], executable_devices=devices,
                                                            compile_options=options)
            if pid[0] == "device":
                return device
            if pid[0] == "client":
                return device.client
            raise pickle.UnpicklingError(f"unknown reference {pid[0]!r}")

    unloaded, args_info_flat, no_kwargs = Unpickler(io.BytesIO(payload)).load()
    return jax.stages.Compiled(unloaded.load(), [], in_tree.unflatten(args_info_flat), out_tree,
                               no_kwargs=no_kwargs)


def save(name: str, compiled: jax.stages.Compiled) -> None:
    """Store a compiled program (best effort: a full disk or an executable that cannot be serialised is skipped)."""
    folder = directory()
    if folder is None:
        return
    temporary = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps(serialize_executable.serialize(compiled))
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", delete=False) as f:
            temporary = f.name
            f.write(data)
        os.replace(temporary, folder / name)
    except Exception as e:
        log.debug("compiled program %s not stored: %s", name, e)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
