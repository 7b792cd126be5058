#!/usr/bin/env bash
# Install what the boot tests need (QEMU and Xen 4.17): the runner ships the script.
exec bash "$(dirname "$0")/../runner/install-deps.sh" "$@"
