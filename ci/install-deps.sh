#!/usr/bin/env bash
# Install what the boot tests need (QEMU, Xen 4.17, e2fsprogs for disk images): the runner
# ships the script.
exec bash "$(dirname "$0")/../runner/install-deps.sh" "$@"
