"""The command line's exit codes (documented in the CLI's help and the docs)."""

EXIT_OK = 0  # every file worked
EXIT_FAILED = 1  # some file failed (its line says why)
EXIT_USAGE = 2  # a usage error, or a model that cannot load
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, finished work kept
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away
