# Sourced (POSIX sh) by the gates that need tools CI installs (.ci/run): how such a gate
# fails, and what it does when a tool is missing -- fail under CI (CI is set there), where
# everything must be installed, and otherwise print SKIPPED with the reason and succeed.
# The sourcing script sets `gate` to its name first.

# fail MESSAGE: "<gate>: FAIL: MESSAGE" on stderr, exit 1.
fail() {
    echo "${gate:-gate}: FAIL: $*" >&2
    exit 1
}

# missing MESSAGE: a prerequisite is not installed.
missing() {
    if [ -n "${CI:-}" ]; then
        fail "$* (CI installs it: .ci/run)"
    fi
    echo "SKIPPED: $*"
    exit 0
}
