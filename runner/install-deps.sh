#!/usr/bin/env bash
# Install what xenpv-run needs on Debian bookworm: QEMU and Xen 4.17 (the runner runs it as root),
# and e2fsprogs (mkfs.ext4 -d: tests build ext4 disk images for a domU's --disk from a
# directory; e2fsprogs is priority required but not essential, so a minimal Debian such as
# the debian:bookworm container image lacks it).
# Idempotent: does nothing when all are present.
set -euo pipefail
have_mkfs_ext4() {
  command -v mkfs.ext4 >/dev/null || [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ]
}
# The box's runs that migrate boot a hypervisor built with shadow paging from Debian's
# source package (runner/xenbox/xen-shadow.sh): make -C xen needs flex and bison (its
# kconfig has no pre-generated parser), gcc, make, python3, dpkg-source and curl.
have_xen_build_deps() {
  local t
  for t in flex bison gcc make python3 dpkg-source curl; do
    command -v "$t" >/dev/null || return 1
  done
}
if command -v qemu-system-x86_64 >/dev/null && [ -f /boot/xen-4.17-amd64.gz ] && have_mkfs_ext4 \
  && have_xen_build_deps; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
pkgs=(qemu-system-x86 xen-hypervisor-4.17-amd64 e2fsprogs flex bison gcc make python3 dpkg-dev curl)
extra=()
# Some machine images carry a backported qemu-utils newer than bookworm's QEMU, whose
# "Breaks: qemu-system-common (<< 8)" makes apt refuse. Pin qemu-utils to the version
# that matches the qemu-system-common apt would install (a downgrade).
if dpkg-query -W -f='${Version}' qemu-utils >/dev/null 2>&1; then
  have=$(dpkg-query -W -f='${Version}' qemu-utils)
  want=$(apt-cache policy qemu-system-common | awk '/Candidate:/ {print $2}')
  if [ -n "$want" ] && [ "$want" != "(none)" ] && dpkg --compare-versions "$have" gt "$want"; then
    extra=(--allow-downgrades "qemu-utils=$want")
  fi
fi
apt-get install -y -q --no-install-recommends "${extra[@]}" "${pkgs[@]}"
