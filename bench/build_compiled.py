"""Build the mypyc-compiled simulator: the same sources, compiled to C extension modules.

    python bench/build_compiled.py              # copy src/sapwood, compile, check the imports
    python bench/sim_speed.py --compiled         # pure beside compiled, same digests checked
    PYTHONPATH=build/compiled python -m sapwood.cli.main sim run --seed 7   # any sim command

Run it from the repository root with an interpreter that has mypy (which brings mypyc), setuptools
and a C compiler. It copies src/sapwood to build/compiled/sapwood (build/ is git-ignored), compiles
the modules named in COMPILED_MODULES there in place, and checks that each of them imports as an
extension module. With `PYTHONPATH=build/compiled` those modules win over the editable install;
everything not compiled (runner, cli, http, node, ...) runs from the copied .py files. The pure
sources in src/ are never touched, so the test suite (which monkeypatches core functions) keeps
running on them. Rebuild after every source change: the copy is a snapshot.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGE = ROOT / "src" / "sapwood"
COMPILED_ROOT = ROOT / "build" / "compiled"

# Globs relative to the sapwood package. Everything the simulator drives per event: the sans-I/O
# cores, the simulated world around them and the in-memory store. The runner, the checkers that
# run once per run on top of these and the I/O layers stay interpreted.
COMPILED_MODULES: tuple[str, ...] = (
    "core/*.py",
    "core/crdt/*.py",
    "core/consensus/*.py",
    "storage/memory.py",
    "sim/world.py",
    "sim/draws.py",
    "sim/network.py",
    "sim/disk.py",
    "sim/faults.py",
    "sim/workload.py",
    "sim/clients.py",
    "sim/history.py",
    "sim/checkers.py",
    "sim/scenario.py",
    "sim/kv_scenario.py",
    "sim/datatype_scenario.py",
    "sim/consistent_scenario.py",
)
# mypy settings for the compile: the project's own checks run in CI on src/; here mypy only has to
# type the modules for mypyc, and lmdb/uvloop ship no stubs.
MYPY_INI = "[mypy]\npython_version = 3.11\nignore_missing_imports = True\n"
OPT_LEVEL = "3"
# What the build was made from, so that measuring a stale build is refused (the copy is a snapshot).
SOURCES_DIGEST_FILE = "SOURCES.sha256"


def sources_digest(package: Path | None = None) -> str:
    """SHA-256 over every .py file of `package` (default: src/sapwood), relative path and bytes,
    in a stable order."""
    package = SOURCE_PACKAGE if package is None else package
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stale_build_problem() -> str | None:
    """Why build/compiled does not match src/sapwood now (None: it does)."""
    if not (COMPILED_ROOT / "sapwood").is_dir():
        return "no compiled build: run `python bench/build_compiled.py` first"
    recorded = COMPILED_ROOT / SOURCES_DIGEST_FILE
    if not recorded.exists() or recorded.read_text().strip() != sources_digest():
        return ("the compiled build is older than src/sapwood (a snapshot of other sources): "
                "run `python bench/build_compiled.py` again")
    return None


def find_c_compiler() -> str:
    """The C compiler setuptools will call, or SystemExit saying how to get one."""
    configured = (sysconfig.get_config_var("CC") or "cc").split()[0]
    # Each once, in order: $CC first, as setuptools takes it.
    candidates = list(dict.fromkeys([*os.environ.get("CC", "").split()[:1], configured, "cc", "gcc"]))
    for candidate in candidates:
        path = shutil.which(candidate)
        if path:
            return path
    raise SystemExit(
        f"build_compiled: no C compiler found (looked for {', '.join(candidates)} on the PATH). "
        "Install one, e.g. `apt-get install gcc`, and run again."
    )


def copy_sources() -> None:
    """A fresh snapshot of src/sapwood, without bytecode or extension modules of earlier builds."""
    target = COMPILED_ROOT / "sapwood"
    if target.exists():
        shutil.rmtree(target)
    for leftover in COMPILED_ROOT.glob("*__mypyc*.so"):
        leftover.unlink()
    if (COMPILED_ROOT / "build").exists():  # the C of the last build (~20 MB), never reused
        shutil.rmtree(COMPILED_ROOT / "build")
    COMPILED_ROOT.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SOURCE_PACKAGE, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    (COMPILED_ROOT / "mypy.ini").write_text(MYPY_INI)


def module_paths() -> list[str]:
    """COMPILED_MODULES expanded to paths relative to COMPILED_ROOT, in a stable order."""
    paths: list[str] = []
    for pattern in COMPILED_MODULES:
        matches = sorted(glob.glob(f"sapwood/{pattern}", root_dir=COMPILED_ROOT))
        if not matches:
            raise SystemExit(f"build_compiled: {pattern!r} in COMPILED_MODULES matches no file")
        paths += [m for m in matches if m not in paths]
    return paths


def compile_modules(paths: list[str]) -> None:
    """mypycify + `setup.py build_ext --inplace` in COMPILED_ROOT, in a child process.

    A child keeps setuptools' chdir and global state out of this script and shows mypy's and the
    compiler's output as it comes.
    """
    program = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        "paths = sys.argv[1:]\n"
        f"modules = mypycify(paths, opt_level={OPT_LEVEL!r}, verbose=False)\n"
        "setup(name='sapwood-compiled', ext_modules=modules,\n"
        "      script_args=['build_ext', '--inplace'])\n"
    )
    result = subprocess.run([sys.executable, "-c", program, *paths], cwd=COMPILED_ROOT,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"build_compiled: mypyc build failed (exit {result.returncode})")


def check_imports(paths: list[str]) -> None:
    """Every listed module must import from an extension module under PYTHONPATH=build/compiled."""
    names = [p.removesuffix(".py").replace("/", ".") for p in paths]
    program = (
        "import importlib, sys\n"
        "bad = [n for n in sys.argv[1:]\n"
        "       if not importlib.import_module(n).__file__.endswith('.so')]\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(COMPILED_ROOT)}
    result = subprocess.run([sys.executable, "-c", program, *names], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit("build_compiled: these modules did not import compiled:\n"
                         f"{result.stdout}{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    started = time.perf_counter()
    compiler = find_c_compiler()
    print(f"build_compiled: C compiler {compiler}")
    copy_sources()
    paths = module_paths()
    print(f"build_compiled: copied src/sapwood to {COMPILED_ROOT.relative_to(ROOT)}/sapwood; "
          f"compiling {len(paths)} modules with mypyc (opt level {OPT_LEVEL}; "
          "type-checking, generating C, then one C compile that takes a few minutes)")
    compile_modules(paths)
    print(f"build_compiled: compiled in {time.perf_counter() - started:.0f} s; checking imports")
    check_imports(paths)
    (COMPILED_ROOT / SOURCES_DIGEST_FILE).write_text(sources_digest() + "\n")
    print(f"build_compiled: done in {time.perf_counter() - started:.0f} s; "
          f"use PYTHONPATH={COMPILED_ROOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
