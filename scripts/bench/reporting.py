"""What the benchmark report scripts share (standard library only): the run's meta.txt and the
command-line dispatch of their subcommands."""

import os
import sys


def read_meta(raw):
    """RAW/meta.txt's `key=value` lines as a dict."""
    meta = {}
    with open(os.path.join(raw, "meta.txt"), encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    return meta


def dispatch(argv, commands, usage):
    """Runs `commands[argv[1]]`, a (function, argument count) pair, on the rest of argv; exits with
    `usage` when the subcommand or its arguments do not match."""
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.exit(usage)
    fn, _ = commands[argv[1]]
    fn(*argv[2:])
