#!/usr/bin/python3
"""Fails when a test (or a script of the two README commands) calls a program
that a brand-new minimal Debian 12 lacks and scripts/deps.sh does not install.

Why this exists: the suite once passed on the developers' machines, where
groff and man-db happened to be installed, and failed on a fresh Debian 12,
where nothing had installed them.

What "a fresh minimal Debian 12" has: the packages of Priority "required"
(what `debootstrap --variant=minbase` and the debian:bookworm image install).
What the scripts add: every package `scripts/deps.sh --list` names, with
everything those depend on (Depends and Pre-Depends, recursively).

What the tests call: every word in the test sources and scripts that names a
program on the standard PATH. Words that name a program but are not calls
(a string "ping" sent over a socket, a file called "nginx.conf") are listed in
not_commands.txt with the reason; a word there that is no longer found in the
sources is an error too, so that list cannot rot.

Usage: check_test_commands.py SOURCE_DIR
"""

import os
import re
import subprocess
import sys

SEARCH_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
# What the README's two commands run: the build, the demo and the test suites.
# scripts/bench.sh and scripts/fuzz.sh install their own extra tools, and
# tests/bench is what bench.sh runs.
SCANNED_DIRS = ["tests", ".ci"]
SCANNED_SCRIPTS = ["scripts/build.sh", "scripts/deps.sh", "scripts/demo.sh", "scripts/test.sh"]
SKIPPED_DIRS = ("corpus", "golden", "bench", "deps")
SCANNED_SUFFIXES = (".sh", ".cpp", ".hpp", ".c", ".h", ".py", ".txt", ".cmake", ".toml", ".js", ".go", ".conf", "run")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def run(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def installed_packages():
    """name -> (priority, [dependency alternatives lists])"""
    out = run(["dpkg-query", "-W", "-f", "${db:Status-Status}\t${Package}\t${Priority}\t${Pre-Depends}, ${Depends}\t${Provides}\n"])
    packages, providers = {}, {}
    for line in out.splitlines():
        status, name, priority, depends, provides = (line.split("\t") + [""] * 5)[:5]
        if status != "installed":
            continue
        groups = []
        for group in depends.split(","):
            alternatives = [a.strip().split(" ")[0].split(":")[0] for a in group.split("|") if a.strip()]
            if alternatives:
                groups.append(alternatives)
        packages[name] = (priority, groups)
        for provided in provides.split(","):
            provided = provided.strip().split(" ")[0]
            if provided:
                providers.setdefault(provided, []).append(name)
    return packages, providers


def closure(roots, packages, providers):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in packages:
            # A virtual package: what provides it here counts.
            todo.extend(providers.get(name, []))
            continue
        for alternatives in packages[name][1]:
            # The alternative that is installed is the one the scripts got.
            chosen = [a for a in alternatives if a in packages or a in providers]
            todo.extend(chosen[:1])
    return seen


def packages_of(paths):
    """path -> the Debian package that owns it, asked of dpkg in one call
    (usrmerge: dpkg knows /usr/bin/ip as /bin/ip, so both spellings are asked;
    a link is asked as itself and as what it leads to)."""
    spellings = {}  # a spelling dpkg may know -> every path it stands for
    for path in paths:
        for candidate in {path, os.path.realpath(path)}:
            alias = candidate[4:] if candidate.startswith("/usr/") else "/usr" + candidate
            for spelling in (candidate, alias):
                spellings.setdefault(spelling, set()).add(path)
    result = subprocess.run(["dpkg-query", "-S"] + sorted(spellings), capture_output=True, text=True)
    owners = {}
    for line in result.stdout.splitlines():
        # "diversion by dash from: /bin/sh" lines say who diverts, not who owns.
        if line.startswith("diversion ") or ": " not in line:
            continue
        package, owned = line.split(": ", 1)
        for owned_path in owned.split(", "):
            for path in spellings.get(owned_path, ()):
                owners.setdefault(path, package.split(",")[0].strip().split(":")[0])
    return owners


def which(word):
    for directory in SEARCH_PATH:
        candidate = os.path.join(directory, word)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def scanned_files(source):
    for top in SCANNED_DIRS:
        for root, dirs, files in os.walk(os.path.join(source, top)):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            for name in files:
                if name.endswith(SCANNED_SUFFIXES) or name == "CMakeLists.txt":
                    yield os.path.join(root, name)
    for script in SCANNED_SCRIPTS:
        yield os.path.join(source, script)


def main():
    source = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    not_commands = {}
    with open(os.path.join(here, "not_commands.txt")) as f:
        for line in f:
            line = line.split("#", 1)
            word = line[0].strip()
            if word:
                not_commands[word] = line[1].strip() if len(line) > 1 else ""

    listed = run(["bash", os.path.join(source, "scripts/deps.sh"), "--list"]).split()
    packages, providers = installed_packages()
    missing_from_machine = [p for p in listed if p not in packages]
    if missing_from_machine:
        print("deps.sh lists packages that are not installed here (run scripts/deps.sh): "
              + " ".join(missing_from_machine))
        return 1
    required = [name for name, (priority, _) in packages.items() if priority == "required"]
    available = closure(listed + required, packages, providers)

    uses = {}  # word -> first "file:line"
    for path in scanned_files(source):
        with open(path, errors="replace") as f:
            for number, line in enumerate(f, 1):
                for word in WORD.findall(line):
                    uses.setdefault(word, f"{os.path.relpath(path, source)}:{number}")

    problems = []
    programs = {word: which(word) for word in uses if word not in not_commands}
    programs = {word: path for word, path in programs.items() if path is not None}
    owners = packages_of(sorted(set(programs.values())))
    for word, program in sorted(programs.items()):
        where = uses[word]
        package = owners.get(program)
        if package is None:
            problems.append(f"{where}: `{word}` is {program}, which no Debian package installed: "
                            "a fresh machine has no such program")
        elif package not in available:
            problems.append(f"{where}: `{word}` is {program}, from the Debian package {package}, which "
                            "scripts/deps.sh does not install (nor anything it installs, nor a minimal "
                            "Debian 12): add it to deps.sh, or to tests/deps/not_commands.txt if the word is not a call")
    for word in sorted(not_commands):
        if word not in uses:
            problems.append(f"tests/deps/not_commands.txt: `{word}` no longer appears in the sources; remove it")

    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"deps_cover_tests: {len(uses)} words scanned; every program the tests name comes from "
          f"scripts/deps.sh ({len(listed)} packages, {len(available)} with dependencies and a minimal Debian 12)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
