#!/usr/bin/env python3
"""Clang's thread-safety analysis over metatrain's own code.

Every non-test .cc of common/, coordinator/, worker/, tools/ and tests/testing/ (the test
clients run threads too) is compiled with the flags of the real build, read from
<build>/compile_commands.json, but by clang++-14 with -fsyntax-only: no code is generated,
so it costs a small part of what a second build would. GCC ignores the ABSL_GUARDED_BY /
ABSL_EXCLUSIVE_LOCKS_REQUIRED / ABSL_LOCKS_EXCLUDED annotations; clang checks them, and a
member read or written without its mutex held is an error here. CI runs it as the ctest
test thread_safety_check; by hand:

    tools/check_thread_safety.py [--build-dir build] [--jobs N] [file.cc ...]

(files, relative to the checkout, limit the run to them).

It needs a configured build whose generated headers exist (`make build`).

Only the build's -D, -U, -I, -isystem, -iquote, -std and -pthread flags are kept: the rest
(optimisation, gcc-only warnings, object output) do not change what the analysis sees.
The build's precompiled header (ATen and autograd, the bulk of every parse) is GCC's, so
clang makes its own once per set of flags and the files of that set share it.
"""

import argparse
import collections
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

CHECKED_DIRS = ("common/", "coordinator/", "worker/", "tools/", "tests/testing/")
# Files left out, each with the reason; the run prints them so they are not forgotten.
EXCLUDED: dict = {}
ANALYSIS_FLAGS = [
    "-fsyntax-only",
    # Only the analysis: other warnings of a second compiler are not this check's business.
    "-Wno-everything",
    "-Wthread-safety",
    "-Wthread-safety-beta",
    "-Werror=thread-safety",
    "-Werror=thread-safety-beta",
]
# Flags taking a separate value that is kept, and those whose value is dropped.
KEPT_WITH_VALUE = ("-D", "-U", "-I", "-isystem", "-iquote", "-idirafter")
DROPPED_WITH_VALUE = ("-o", "-MF", "-MT", "-MQ", "-x")


def fail(message):
    print(f"check_thread_safety: {message}", file=sys.stderr)
    sys.exit(1)


def parse_command(entry):
    """(kept flags, the build's precompiled-header header or None) of one compile command."""
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    kept, pch_header = [], None
    i = 1  # args[0] is the compiler
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if arg == "-include" and value is not None:
            # CMake's precompiled header is included this way; other forced includes stay.
            if value.endswith("cmake_pch.hxx"):
                pch_header = value
            else:
                kept += [arg, value]
            i += 2
        elif arg in KEPT_WITH_VALUE and value is not None:
            kept += [arg, value]
            i += 2
        elif arg in DROPPED_WITH_VALUE:
            i += 2
        elif arg.startswith(("-D", "-U", "-I", "-std=")) or arg == "-pthread":
            kept.append(arg)
            i += 1
        else:
            i += 1
    return kept, pch_header


def run(command, cwd):
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return result.returncode, result.stdout, time.monotonic() - started


def main():
    source_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=os.path.join(source_dir, "build"))
    parser.add_argument("--clang", default=os.environ.get("CLANG", "clang++-14"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("-v", "--verbose", action="store_true", help="time every file")
    parser.add_argument("files", nargs="*", help="check only these (relative to the checkout)")
    options = parser.parse_args()

    clang = shutil.which(options.clang)
    if clang is None:
        fail(f"{options.clang} not found (deploy/install-deps.sh installs clang-14)")
    database = os.path.join(options.build_dir, "compile_commands.json")
    if not os.path.exists(database):
        fail(f"no {database}: configure and build first (make build)")
    with open(database) as f:
        entries = json.load(f)

    # The same file may be compiled for several targets; one analysis is enough.
    selected = {}
    for entry in entries:
        path = os.path.normpath(os.path.join(entry["directory"], entry["file"]))
        relative = os.path.relpath(path, source_dir)
        if (
            relative.startswith(CHECKED_DIRS)
            and relative.endswith(".cc")
            and not relative.endswith("_test.cc")
            and relative not in EXCLUDED
            and (not options.files or relative in options.files)
        ):
            selected.setdefault(relative, entry)
    if not selected:
        fail(f"{database} lists none of the files to check (is it this checkout's build?)")
    unknown = set(options.files) - set(selected)
    if unknown:
        fail(f"not among the files checked: {', '.join(sorted(unknown))}")

    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="metatrain-thread-safety-")
    try:
        # Group the files by flags; each group that uses the precompiled header gets one
        # clang PCH made from a copy of its header (next to the original, clang would try
        # to read GCC's .gch).
        groups = collections.defaultdict(list)
        for relative, entry in sorted(selected.items()):
            kept, pch_header = parse_command(entry)
            header_text = open(pch_header).read() if pch_header else None
            groups[(tuple(kept), header_text)].append((relative, entry))
        jobs = []
        pch_builds = []
        for n, ((kept, header_text), files) in enumerate(groups.items()):
            prefix = [clang] + list(kept)
            if header_text is not None:
                header = os.path.join(work, f"pch{n}.h")
                with open(header, "w") as f:
                    f.write(header_text)
                if len(files) > 1:
                    pch = header + ".pch"
                    pch_builds.append((prefix + ["-x", "c++-header", header, "-o", pch], work))
                    prefix += ["-include-pch", pch]
                else:
                    prefix += ["-include", header]
            for relative, entry in files:
                jobs.append((relative, prefix + ANALYSIS_FLAGS + [os.path.join(source_dir, relative)],
                             entry["directory"]))

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            for (rc, output, _), (command, _) in zip(
                pool.map(lambda job: run(*job), pch_builds), pch_builds
            ):
                if rc != 0:
                    print(output)
                    fail("could not build the precompiled header: " + shlex.join(command))
            results = list(pool.map(lambda job: (job[0],) + run(job[1], job[2]), jobs))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    failed = [(relative, output) for relative, rc, output, _ in results if rc != 0]
    for relative, output in failed:
        print(f"==== {relative}\n{output}")
    for relative, reason in EXCLUDED.items():
        print(f"not checked: {relative}: {reason}")
    if options.verbose:
        for relative, _, _, seconds in sorted(results, key=lambda r: -r[3]):
            print(f"{seconds:6.1f} s  {relative}")
    elapsed = time.monotonic() - started
    print(
        f"check_thread_safety: {len(results)} files, {len(pch_builds)} precompiled header(s), "
        f"{len(failed)} failed, {elapsed:.0f} s with {options.jobs} jobs ({clang})"
    )
    if failed:
        if any("thread-safety" in output for _, output in failed):
            print(
                "A member marked ABSL_GUARDED_BY(mu) was used without mu held, or a function's "
                "ABSL_EXCLUSIVE_LOCKS_REQUIRED / ABSL_LOCKS_EXCLUDED contract was broken; "
                "clang's messages above name the line."
            )
        else:
            print("clang could not compile the files above: see its errors.")
        sys.exit(1)


if __name__ == "__main__":
    main()
