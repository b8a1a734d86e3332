"""edgetl's exit codes, one table (the README's "Exit codes" section is written from it and a
test holds the two together)."""
OK, VERDICT_FAILED, BAD_INPUT, INT8_OR_PARITY, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 70, 130

MEANING = {
    OK: "success (bench/run/demo: every check passed; compare: no detectable regression)",
    VERDICT_FAILED: "the target's verdict is FAIL, a build failed in bench, or compare found "
                    "B detectably slower or less accurate",
    BAD_INPUT: "bad input: an option, file, data folder, profile or device to fix (the line "
               "says which and how)",
    INT8_OR_PARITY: "export: builds written, but the int8 budget was missed or a build fell "
                    "below its parity threshold (the manifest records which)",
    INTERNAL: "internal error: a bug; the line names the log holding its traceback",
    INTERRUPTED: "interrupted (Ctrl-C, SIGTERM, SIGHUP); the line says how to continue",
}
